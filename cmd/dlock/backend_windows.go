package main

import "syscall"

// backendProcAttr: the helper gets a process group of its own, so that a
// console's Ctrl-C does not end it before dlock has stopped the job.
func backendProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

func closeOnExec(fd int) {}
