//go:build unix

package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// backendProcAttr puts the helper in a process group of its own: a
// terminal's Ctrl-C or a kill of dlock's group must not end it before
// dlock has stopped the job.
func backendProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

// frontBackend is a helper that the front process starts for the
// supervisor. The supervisor's descendants are the job (on Linux, as its
// child subreaper; with -pidns every process of its namespace), so the
// helper must not be one of them: it is the front's child, its pipes
// handed to the supervisor.
type frontBackend struct {
	cmd              *exec.Cmd
	supW, supR, supE *os.File // the supervisor's ends: the helper's stdin, stdout, stderr
}

// startFrontBackend starts the helper when c.path is a URL (nil when it is
// not) and adds its pipes to sup.
func startFrontBackend(c *runConfig, sup *exec.Cmd) (*frontBackend, error) {
	scheme := backendScheme(c.path)
	if scheme == "" {
		return nil, nil
	}
	if err := c.checkBackendFlags(c.path); err != nil {
		return nil, err
	}
	prog, err := findBackend(scheme)
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	// Its stderr goes through the supervisor, which copies it to its own:
	// when the supervisor lets go of the caller's stderr (COMMAND exited,
	// leftovers hold the lock), the helper does too.
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command(prog)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = backendProcAttr()
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("dlock: starting %s: %w", prog, err)
	}
	n := 3 + len(sup.ExtraFiles)
	sup.ExtraFiles = append(sup.ExtraFiles, inW, outR, errR)
	sup.Env = append(sup.Env, fmt.Sprintf("%s=%d,%d,%d", backendFDsEnv, n, n+1, n+2))
	return &frontBackend{cmd: cmd, supW: inW, supR: outR, supE: errR}, nil
}

// handedOver closes the front's copies of the supervisor's ends, so that
// the helper sees the end of its input when the supervisor is gone.
func (f *frontBackend) handedOver() {
	if f != nil {
		f.supW.Close()
		f.supR.Close()
		f.supE.Close()
	}
}

// wait waits (at most within) for the helper to exit after the
// supervisor did: it releases a lock it won as the supervisor died
// waiting, and is no process of the job for stopOrphans to stop.
func (f *frontBackend) wait(within time.Duration) {
	if f == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		f.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(within):
		f.cmd.Process.Kill()
		<-done
	}
}
