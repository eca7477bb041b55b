package dlock

// The goroutines that make system calls for a caller that must be able to
// return while they hang: Unlock's release, an attempt a context can
// abandon.

import "time"

// offload runs fn in another goroutine: an idle one that ran an earlier
// fn if there is one, else a new one. The call that must be able to
// return while a system call hangs (Unlock's release, an attempt that
// can be given up) hands its system calls over to another goroutine;
// reusing one spares a goroutine's start and the growth of its stack to
// what a transition needs, on every Unlock. A goroutine stuck in fn is
// simply not idle: the next call starts another.
func offload(fn func()) {
	select {
	case idleWorkers <- fn:
	default:
		go work(fn)
	}
}

// idleWorkers hands a function to a goroutine waiting in work.
var idleWorkers = make(chan func())

// workerIdle is how long a goroutine of offload's waits for more work
// before it ends (up to twice that).
const workerIdle = time.Second

// work runs fn, and then what offload hands it, until none comes for
// workerIdle. Its timer is not reset for every fn (a timer operation on
// every Unlock): when it fires, a goroutine that ran something since
// waits one more period.
func work(fn func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for ran := true; ; {
		if fn != nil {
			fn()
			fn, ran = nil, true
		}
		select {
		case fn = <-idleWorkers:
		case <-idle.C:
			if !ran {
				return
			}
			ran = false
			idle.Reset(workerIdle)
		}
	}
}
