//go:build !unix && !windows

package dlock

// pidAlive knows nothing here: say alive, so that the full check decides.
func pidAlive(pid int) bool { return true }
