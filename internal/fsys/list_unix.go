//go:build aix || darwin || dragonfly || freebsd || hurd || illumos || netbsd || openbsd || solaris

package fsys

import (
	"os"

	"golang.org/x/sys/unix"
)

// readNames lists the directory at path without following a symlink there:
// a symlink planted at the lock's path is an error (ELOOP or ENOTDIR),
// never a lock.
func readNames(path string) ([]string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return f.Readdirnames(-1)
}
