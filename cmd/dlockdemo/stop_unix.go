//go:build unix && !linux

package main

import (
	"os"
	"syscall"
	"time"
)

// canStop says whether this system can stop and continue a process.
const canStop = true

// stopSelf stops this process (SIGSTOP) until someone sends SIGCONT. The
// signal may take effect a moment after kill returns, hence the sleep,
// which the stop interrupts.
func stopSelf() error {
	err := syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	time.Sleep(100 * time.Millisecond)
	return err
}

// resume continues a stopped process.
func resume(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
