package main

import (
	"errors"
	"os/exec"
	"syscall"
)

// job is COMMAND and every process it starts, as far as the system lets
// dlock follow them (see startJob on each system).
type job interface {
	// commandExit receives COMMAND's exit status (128+N for signal N).
	commandExit() <-chan int
	// gone is closed when the job's last process has exited.
	gone() <-chan struct{}
	// signal sends sig to every process of the job.
	signal(sig syscall.Signal)
	// pids lists the job's living processes, for messages.
	pids() []int
	// mechanism says how the job is kept together, for -v.
	mechanism() string
	// cleanup removes what kept the job together (a cgroup), once it is
	// gone and dlock has reported its exit status.
	cleanup()
}

// errLostFirst: the lock was lost before COMMAND could be started.
var errLostFirst = errors.New("the lock was lost before COMMAND could start")

// startHeld starts the job while the lock is held, and never once it is
// lost: a lock given up at its deadline (an acquisition that took longer
// than it has, a pause) must not run the job it guards, even alone.
// lost is the lock's Lost channel.
func startHeld(lost <-chan struct{}, cmd *exec.Cmd, c *runConfig) (job, error) {
	select {
	case <-lost:
		return nil, errLostFirst
	default:
	}
	return startJob(cmd, c)
}
