package main

import (
	"os"
	"runtime"
	"syscall"
)

// canStop says whether this system can stop and continue a process.
const canStop = true

// stopSelf stops this process (SIGSTOP) until someone sends SIGCONT. The
// signal is sent to the calling thread, so that the stop takes effect
// before tgkill returns (a kill(2) of the whole process could let this
// thread run on for a moment).
func stopSelf() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGSTOP)
}

// resume continues a stopped process.
func resume(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
