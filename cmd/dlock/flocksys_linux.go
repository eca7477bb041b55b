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
