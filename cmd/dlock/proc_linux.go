package main

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// startChild starts cmd so that the kernel kills it (SIGKILL) if dlock
// dies, even by SIGKILL, and returns a channel that receives cmd.Wait's
// result. Linux sends the parent death signal when the thread that forked
// the child exits, not the process, so the child is started from a
// goroutine locked to its thread, and that goroutine keeps the thread
// until the child has been waited for.
func startChild(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return waited, nil
}

// forward passes a signal on to the child.
func forward(p *os.Process, sig os.Signal) error { return p.Signal(sig) }
