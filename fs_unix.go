//go:build unix

package dlock

import (
	"os"
	"syscall"

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

// isRealDir reports whether path is a directory, not following a symlink
// there. (A raw lstat: os.Lstat's FileInfo costs as much again.)
func isRealDir(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// renameEntry renames one state entry to a name that was never used in the
// lock directory (see protocol.go). It does not Lstat the target first as
// os.Rename does: the kernel's answer is the compare-and-swap.
func renameEntry(from, to string) error {
	if err := renameExclusive(from, to); err != errNoExclusive {
		return err
	}
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
