package main

import "syscall"

// peerSysProcAttr: the peer is killed when the thread that started it
// ends (with its process, at the latest).
func peerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
