//go:build darwin || netbsd || openbsd

package proc

// jailed: no jails here (jail_bsd.go).
func jailed() bool { return false }
