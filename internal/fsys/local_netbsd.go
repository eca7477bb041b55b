package fsys

import "golang.org/x/sys/unix"

func mountFlags(dir string) uint64 {
	var st unix.Statvfs_t
	if unix.Statvfs(dir, &st) != nil {
		return 0
	}
	return uint64(st.Flag)
}
