//go:build darwin || dragonfly || freebsd

package fsys

import "golang.org/x/sys/unix"

func mountFlags(dir string) uint64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return uint64(st.Flags)
}
