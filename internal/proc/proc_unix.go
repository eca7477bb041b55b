//go:build unix

package proc

import (
	"errors"
	"syscall"
)

// pidLiveness asks kill(pid, 0). Only ESRCH proves the process gone; EPERM
// means it exists but is another user's.
func pidLiveness(pid int) (alive, known bool) {
	err := syscall.Kill(pid, 0)
	switch {
	case errors.Is(err, syscall.ESRCH):
		return false, true
	case err == nil || errors.Is(err, syscall.EPERM):
		return true, true
	}
	return false, false
}

// pidAlive is a cheap first look: false only if no process has pid.
func pidAlive(pid int) bool {
	alive, known := pidLiveness(pid)
	return alive || !known
}
