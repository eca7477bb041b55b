package fsys

import (
	"errors"

	"golang.org/x/sys/windows"
)

// transientOS: Windows' refusals that pass. A sharing violation or a
// lock violation: another process opened the entry (or a directory on
// the path) without letting others delete or rename it. "Access is
// denied": what a delete-pending name answers (STATUS_DELETE_PENDING maps
// to it), and what an open handle on a directory being renamed gives.
// ERROR_DELETE_PENDING, where an API passes it through. (Not
// ERROR_PATH_NOT_FOUND and the like: a missing name is an answer.)
func transientOS(err error) bool {
	var errno windows.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case windows.ERROR_SHARING_VIOLATION, windows.ERROR_LOCK_VIOLATION,
		windows.ERROR_ACCESS_DENIED, windows.ERROR_DELETE_PENDING:
		return true
	}
	return false
}

// releaseOnRefusal: on Windows our own watch's handle can be what keeps
// a removed name delete-pending.
const releaseOnRefusal = true

// beforeRemove lets the watcher close its handle on path first.
func beforeRemove(path string) {
	if f := release.Load(); f != nil {
		(*f)(path)
	}
}
