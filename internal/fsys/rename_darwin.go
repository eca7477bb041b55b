package fsys

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// renameExclusive renames from to to, failing if to exists.
func renameExclusive(from, to string) error {
	err := unix.RenamexNp(from, to, unix.RENAME_EXCL)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EINVAL) {
		return ErrNoExclusive
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
