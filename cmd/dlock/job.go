package main

import "syscall"

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
}
