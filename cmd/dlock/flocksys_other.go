//go:build unix && !linux

package main

import (
	"errors"
	"fmt"
	"os"
)

// Outside Linux, a descriptor's file has no name dlock can look up, there
// are no open file description locks, and holders are not listed: the
// descriptor form and --fcntl are Linux's.

func fdPath(f *os.File) (string, error) {
	return "", fmt.Errorf("descriptor %s: the descriptor form needs Linux's /proc to find the file's lock directory; give FILE instead", f.Name())
}

func ofdLock(fd, op int) error {
	return errors.New("--fcntl: open file description locks are Linux's; leave --fcntl out")
}

func findHolders(key []string, typ string) []int { return nil }

func fdStillLocked(pid, fd int, dev, ino uint64, fcntl bool) bool { return true }

// zombie: these systems are not asked (a stopped holder is waited for by
// its pid alone).
func zombie(pid int) bool { return false }

func probeLock(pid, fd int, dev, ino uint64, fcntl, shared bool) <-chan struct{} { return nil }
