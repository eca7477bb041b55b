//go:build !unix && !windows

package proc

// pidAlive knows nothing here: say alive, so that the full check decides.
func pidAlive(pid int) bool { return true }
