//go:build linux

package dlock

// permChild runs as an unprivileged user (see TestPermissionDenied).
func permChild() int { return 0 }
