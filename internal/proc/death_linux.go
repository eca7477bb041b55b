package proc

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// DeathWatch, on Linux, is a pidfd that the runtime's poller waits on: no
// thread and no wake-up while the process lives.
type DeathWatch struct {
	pid   int
	start uint64
	f     *os.File
	dead  chan struct{}
}

func watchDeath(pid int, pstart uint64) *DeathWatch {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return deadAlready(pid, pstart)
	}
	if err != nil {
		return nil
	}
	if pstart != 0 { // (known by its pid alone, it is watched as it is)
		if start, alive, _ := processStart(pid); alive && start != pstart {
			unix.Close(fd) // the pid was reused before we opened it
			return deadAlready(pid, pstart)
		}
	}
	if unix.SetNonblock(fd, true) != nil {
		unix.Close(fd)
		return nil
	}
	d := &DeathWatch{pid: pid, start: pstart, f: os.NewFile(uintptr(fd), "pidfd"), dead: make(chan struct{})}
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
func deadAlready(pid int, pstart uint64) *DeathWatch {
	d := &DeathWatch{pid: pid, start: pstart, dead: make(chan struct{})}
	close(d.dead)
	return d
}

func (d *DeathWatch) watches(pid int, pstart uint64) bool {
	return d != nil && d.pid == pid && d.start == pstart
}

func (d *DeathWatch) done() <-chan struct{} {
	if d == nil {
		return nil
	}
	return d.dead
}

func (d *DeathWatch) markDead() {
	if d != nil {
		Died(d.pid, d.start)
	}
}

func (d *DeathWatch) close() {
	if d != nil && d.f != nil {
		d.f.Close()
	}
}
