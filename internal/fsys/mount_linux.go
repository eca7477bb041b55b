package fsys

import (
	"os"

	"golang.org/x/sys/unix"
)

// maybeFUSE reports whether dir may be on a FUSE filesystem: a statfs is
// far cheaper than reading the mount table (about 2 µs against 70 µs
// here), and most locks are not on FUSE. When statfs fails, it may be.
func maybeFUSE(dir string) bool {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return true
	}
	return uint32(st.Type) == unix.FUSE_SUPER_MAGIC
}

// mountTable reads this process's mount table (its mount namespace, as
// seen from its root).
func mountTable() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountinfo(string(b)), nil
}
