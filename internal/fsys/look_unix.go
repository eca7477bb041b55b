//go:build unix

package fsys

import (
	"os"

	"golang.org/x/sys/unix"
)

// lookFresh opens dir without following a symlink there (close-to-open:
// an NFS client revalidates dir's attributes, and so the names cached
// under it, when it opens it), then looks at name through that
// descriptor: three system calls, and one round trip to an NFS server
// when dir has not changed.
func lookFresh(dir, name string) (bool, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, &os.PathError{Op: "lstat", Path: dir + "/" + name, Err: err}
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}
