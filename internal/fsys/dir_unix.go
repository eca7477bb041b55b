//go:build unix

package fsys

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// removeDir removes the empty directory at path (one rmdir, where
// os.Remove tries unlink first).
func removeDir(path string) error { return syscall.Rmdir(path) }

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
// lock directory (see internal/lockdir). It does not Lstat the target first as
// os.Rename does: the kernel's answer is the compare-and-swap.
func renameEntry(from, to string) error {
	if err := renameExclusive(from, to); err != ErrNoExclusive {
		return err
	}
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
