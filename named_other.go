//go:build !unix

package dlock

import (
	"fmt"
	"os"
	"os/user"
)

func userTag() string {
	if u, err := user.Current(); err == nil {
		return NameToFile(u.Username)[2:]
	}
	return "user"
}

// checkPrivateDir verifies that dir is a real directory. (On Windows the
// temporary directory is per user; its ACLs are not inspected here.)
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("dlock: lock directory %s: %w", dir, err)
	}
	if !fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("dlock: lock directory %s is not a directory: %w", dir, ErrNotLock)
	}
	return nil
}
