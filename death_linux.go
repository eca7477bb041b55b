package dlock

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// deathWatch tells when a process on this host exits, through a pidfd that
// the runtime's poller waits on: no thread and no wake-up while the
// process lives. The first waiter in line uses it for its holder, so that
// a holder killed without a word is reclaimed at once instead of at the
// next (slow) poll.
type deathWatch struct {
	pid   int
	start uint64
	f     *os.File
	dead  chan struct{}
}

// watchDeath watches h's process, or returns nil where it cannot (no
// pidfd before Linux 5.3). A process already gone, or whose pid is
// already another's, is reported dead at once.
func watchDeath(h Holder) *deathWatch {
	fd, err := unix.PidfdOpen(h.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return deadAlready(h)
	}
	if err != nil {
		return nil
	}
	if h.pstart != 0 { // (known by its pid alone, it is watched as it is)
		if start, alive, _ := processStart(h.PID); alive && start != h.pstart {
			unix.Close(fd) // the pid was reused before we opened it
			return deadAlready(h)
		}
	}
	if unix.SetNonblock(fd, true) != nil {
		unix.Close(fd)
		return nil
	}
	d := &deathWatch{pid: h.PID, start: h.pstart, f: os.NewFile(uintptr(fd), "pidfd"), dead: make(chan struct{})}
	rc, err := d.f.SyscallConn()
	if err != nil {
		d.f.Close()
		return nil
	}
	go func() {
		calls := 0
		// The first call says "not yet", so Read waits until the pidfd is
		// readable (the process exited) or the file is closed.
		if rc.Read(func(uintptr) bool { calls++; return calls > 1 }) == nil {
			close(d.dead)
		}
	}()
	return d
}

// deadAlready is the watch of a process known to be gone.
func deadAlready(h Holder) *deathWatch {
	d := &deathWatch{pid: h.PID, start: h.pstart, dead: make(chan struct{})}
	close(d.dead)
	return d
}

func (d *deathWatch) watches(h Holder) bool {
	return d != nil && d.pid == h.PID && d.start == h.pstart
}

func (d *deathWatch) done() <-chan struct{} {
	if d == nil {
		return nil
	}
	return d.dead
}

// markDead records the watched process as gone (see deadSeen).
func (d *deathWatch) markDead() {
	if d != nil {
		markDead(d.pid, d.start)
	}
}

func (d *deathWatch) close() {
	if d != nil && d.f != nil {
		d.f.Close()
	}
}
