//go:build !linux && !windows

package main

import (
	"os"
	"os/exec"
)

// startChild starts cmd and returns a channel that receives cmd.Wait's
// result. These systems have no parent death signal: if dlock is killed
// with SIGKILL, the child keeps running and the lock goes stale after
// TIMEOUT, when another process may take it. (Catchable signals are
// forwarded to the child, which then exits as it chooses.)
func startChild(cmd *exec.Cmd) (<-chan error, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	return waited, nil
}

// forward passes a signal on to the child.
func forward(p *os.Process, sig os.Signal) error { return p.Signal(sig) }
