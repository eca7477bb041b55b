package dlock

import (
	"errors"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noReplaceBroken is set once a filesystem refused RENAME_NOREPLACE
// (FUSE and NFS servers may); from then on renameEntry uses plain rename,
// whose safety rests on the protocol's never-reused names alone.
var noReplaceBroken atomic.Bool

// renameExclusive renames from to to, failing with EEXIST if to exists,
// even as an empty directory, which plain rename(2) would replace.
func renameExclusive(from, to string) error {
	if noReplaceBroken.Load() {
		return errNoExclusive
	}
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP) {
		noReplaceBroken.Store(true)
		return errNoExclusive
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
