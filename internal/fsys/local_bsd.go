//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package fsys

import "golang.org/x/sys/unix"

// isLocalFS reports whether dir is on a local filesystem (MNT_LOCAL),
// where a watch sees every change.
func isLocalFS(dir string) bool {
	return mountFlags(dir)&unix.MNT_LOCAL != 0
}
