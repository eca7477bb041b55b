package fsys

import "golang.org/x/sys/unix"

func inMemory(dir string) bool {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return false
	}
	return uint32(st.Type) == unix.TMPFS_MAGIC || uint32(st.Type) == unix.RAMFS_MAGIC
}

// isLocalFS reports whether dir is on a local filesystem, where a watch
// sees every change. Network and FUSE filesystems are not: a watch there
// sees only what this host does through this mount.
func isLocalFS(dir string) bool { return cachingOf(dir) == Coherent }
