package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// watchProcess returns a channel closed when process pid exits: a pidfd
// that the runtime's poller waits on, or, without pidfds (before Linux
// 5.3), a poll.
func watchProcess(pid int) <-chan struct{} {
	done := make(chan struct{})
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if err == unix.ESRCH {
			close(done)
			return done
		}
		go pollProcess(pid, done)
		return done
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		go pollProcess(pid, done)
		return done
	}
	go func() {
		calls := 0
		// The first call says "not yet", so Read waits until the pidfd is
		// readable: the process exited.
		rc.Read(func(uintptr) bool { calls++; return calls > 1 })
		f.Close()
		close(done)
	}()
	return done
}

func pollProcess(pid int, done chan struct{}) {
	for processAlive(pid) && !zombie(pid) {
		time.Sleep(250 * time.Millisecond)
	}
	close(done)
}

func zombie(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.zombie
}
