package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fdPath is the name of the file open on f, from /proc/self/fd, checked
// to be the same file.
func fdPath(f *os.File) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err == nil {
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(p, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return p, nil
		}
	}
	return "", fmt.Errorf("descriptor %s: its file has no name dlock can find (deleted, a pipe or a socket), so no lock directory can go with it", f.Name())
}

// ofdLock is flock(2)'s op as an open file description lock of the whole
// file.
func ofdLock(fd, op int) error {
	lk := unix.Flock_t{Whence: 0}
	switch op &^ unix.LOCK_NB {
	case unix.LOCK_EX:
		lk.Type = unix.F_WRLCK
	case unix.LOCK_SH:
		lk.Type = unix.F_RDLCK
	default:
		lk.Type = unix.F_UNLCK
	}
	cmd := unix.F_OFD_SETLKW
	if op&unix.LOCK_NB != 0 {
		cmd = unix.F_OFD_SETLK
	}
	return unix.FcntlFlock(uintptr(fd), cmd, &lk)
}

// findHolders lists the processes running the holder subcommand with the
// arguments key (and the lock type typ, unless "").
func findHolders(key []string, typ string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(b, []byte(flockHolderCmd)) {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < len(key)+2 {
			continue
		}
		match := true
		for i, k := range key {
			match = match && args[1+i] == k
		}
		if match && (typ == "" || args[1+len(key)] == typ) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// fdStillLocked reports whether process pid's descriptor fd is still the
// file dev:ino and still holds a lock of the kind asked for (fdinfo lists
// the locks of that open file description).
func fdStillLocked(pid, fd int, dev, ino uint64, fcntl bool) bool {
	base := "/proc/" + strconv.Itoa(pid) + "/"
	var st unix.Stat_t
	if unix.Stat(base+"fd/"+strconv.Itoa(fd), &st) != nil || uint64(st.Dev) != dev || st.Ino != ino {
		return false
	}
	b, err := os.ReadFile(base + "fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return false
	}
	kind := "FLOCK"
	if fcntl {
		kind = "OFDLCK"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "lock:") && strings.Contains(line, kind) {
			return true
		}
	}
	return false
}

// probeLock returns a channel closed once the kernel lock that process
// pid's descriptor fd (the file dev:ino) holds is gone: a descriptor of
// our own on the same file waits in the kernel for a lock that conflicts
// with it, and gets it when no open file description holds the caller's
// any more. nil when no probe can be made (the file cannot be opened
// for the lock kind needed).
func probeLock(pid, fd int, dev, ino uint64, fcntl, shared bool) <-chan struct{} {
	flags := unix.O_RDONLY
	if fcntl && shared {
		flags = unix.O_RDWR // a write lock, to conflict with a read lock
	}
	p, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(fd), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(p, &st) != nil || uint64(st.Dev) != dev || st.Ino != ino {
		unix.Close(p)
		return nil
	}
	free := make(chan struct{})
	go func() {
		// Let go of the probe at once: the caller may lock its file
		// again right away.
		for {
			var err error
			switch {
			case !fcntl:
				err = unix.Flock(p, unix.LOCK_EX)
			case shared:
				err = ofdLock(p, unix.LOCK_EX)
			default:
				err = ofdLock(p, unix.LOCK_SH)
			}
			if err != unix.EINTR {
				break
			}
		}
		unix.Close(p)
		close(free)
	}()
	return free
}
