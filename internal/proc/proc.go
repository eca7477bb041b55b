// Package proc tells who this process is and whether another process on
// this host still lives, behind one contract: this file states it, and
// each OS's files supply the unexported functions behind it (proc_*.go,
// death_*.go). Where an OS cannot tell, the answer says "unknown", and
// dlock then waits for a holder's TIMEOUT instead of reclaiming at once:
// these answers only ever decide when a reclaim is tried, never whether
// two can hold a lock.
package proc

import "sync"

// HostIdentity names this boot of this host (and on Linux this process's
// pid namespace): two processes that get the same value see the same
// pids. "" where it cannot be known.
func HostIdentity() string { return hostIdentity() }

// ProcessStart returns the start time of process pid, in OS-specific
// units (0 where the OS does not give it cheaply), whether it is alive (a
// zombie is not), and whether that verdict is known at all.
func ProcessStart(pid int) (start uint64, alive, known bool) { return processStart(pid) }

// PIDAlive is a cheap first look: false only if no process has pid.
func PIDAlive(pid int) bool { return pidAlive(pid) }

// WatchDeath watches the process pid, started at pstart (0: known by its
// pid alone), or returns nil where it cannot (no pidfd before Linux 5.3,
// other systems). A process already gone, or whose pid is already
// another's, is reported dead at once. The first waiter in line watches
// its holder, so that a holder killed without a word is reclaimed at once
// instead of at the next (slow) poll. A nil *DeathWatch is a valid one
// that never fires.
func WatchDeath(pid int, pstart uint64) *DeathWatch { return watchDeath(pid, pstart) }

// Watches reports whether d watches the process pid started at pstart.
func (d *DeathWatch) Watches(pid int, pstart uint64) bool { return d.watches(pid, pstart) }

// Done is closed when the watched process has exited; nil (never ready)
// for a nil watch.
func (d *DeathWatch) Done() <-chan struct{} { return d.done() }

// MarkDead records the watched process as gone (see Died).
func (d *DeathWatch) MarkDead() { d.markDead() }

// Close ends the watch.
func (d *DeathWatch) Close() { d.close() }

// deadSeen remembers the last processes of this host that a death watch
// saw exit, so that a waiter's cached "alive" does not outlive them: the
// waiter a death watch wakes reclaims at once.
var deadSeen struct {
	mu   sync.Mutex
	keys [16]struct {
		pid    int
		pstart uint64
	}
	next int
}

// Died records that the process pid of this host, started at pstart,
// has exited.
func Died(pid int, pstart uint64) {
	deadSeen.mu.Lock()
	defer deadSeen.mu.Unlock()
	deadSeen.keys[deadSeen.next].pid, deadSeen.keys[deadSeen.next].pstart = pid, pstart
	deadSeen.next = (deadSeen.next + 1) % len(deadSeen.keys)
}

// KnownDead reports whether Died recorded the process pid of this
// host, started at pstart, lately.
func KnownDead(pid int, pstart uint64) bool {
	if pid <= 0 {
		return false
	}
	deadSeen.mu.Lock()
	defer deadSeen.mu.Unlock()
	for _, d := range deadSeen.keys {
		if d.pid == pid && d.pstart == pstart {
			return true
		}
	}
	return false
}
