//go:build unix

package dlock

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func userTag() string { return strconv.Itoa(os.Getuid()) }

// checkPrivateDir verifies that dir is a real directory owned by this
// user that nobody else can write.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("dlock: lock directory %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("dlock: lock directory %s is not a directory (a symlink or file planted there?): %w", dir, ErrNotLock)
	case ok && int(st.Uid) != os.Getuid():
		return fmt.Errorf("dlock: lock directory %s is owned by uid %d, not by this user (%d): refusing it", dir, st.Uid, os.Getuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("dlock: lock directory %s is writable by others (mode %v): refusing it", dir, fi.Mode().Perm())
	}
	return nil
}
