// Package fsys holds the directory system calls dlock's protocol is made
// of, behind one contract, as go-internal's lockedfile/internal/filelock
// does: this file states what each call does, and each OS's files supply
// the unexported functions behind it (rename_*.go, dir_*.go, list_*.go,
// local_*.go, mount_*.go).
//
// Nothing here knows what a lock is: the protocol (internal/lockdir)
// decides what to rename and when; this package only does it with as few
// system calls as the OS allows, and never follows a symlink at the path
// it acts on.
package fsys

import (
	"errors"
	"io/fs"
)

// ErrNoExclusive is RenameNoReplace's answer where the OS, or the
// filesystem, has no rename that refuses an existing target.
var ErrNoExclusive = errors.New("exclusive rename not supported")

// errNotDirectory: a symlink, junction or file where a directory must be.
var errNotDirectory = errors.New("not a directory")

// Every call below retries, for a moment, a refusal that passes by
// itself (Windows' sharing violations and delete-pending names:
// ErrTransient, refused.go), and then reports it as a RefusedError.

// RenameNoReplace renames from to to, failing with an error matching
// fs.ErrExist if to exists, even as an empty directory (which rename(2)
// would replace): Linux RENAME_NOREPLACE, macOS RENAME_EXCL, Windows'
// MoveFileEx. It returns ErrNoExclusive, having done nothing, where that
// is not available; on Linux, once a filesystem has refused it, for the
// rest of the process.
func RenameNoReplace(from, to string) error { return retry2("rename", renameExclusive, from, to) }

// RenameEntry renames a lock's state entry to a name never used before
// in its directory: RenameNoReplace where the OS has it, else rename(2)
// (which never replaces a non-empty directory, and the protocol's names
// are never reused). It does not look at the target first: the kernel's
// answer is the compare-and-swap.
func RenameEntry(from, to string) error { return retry2("rename", renameEntry, from, to) }

// CheckAndRename is IsRealDir(dir) then RenameEntry(dir/from, dir/to),
// in as few system calls and round trips as the OS allows, without
// allocating (Linux: paths copied into a buffer on the stack); walk says
// how. Done is false when it did nothing (another OS, paths too long, a
// call refused): then the caller makes the portable calls.
func CheckAndRename(dir, from, to string, walk Walk) Renamed {
	if Fault.Load() != nil {
		return Renamed{} // a test's faults are played on the portable calls
	}
	return checkAndRename(dir, from, to, walk)
}

// Walk is how CheckAndRename looks at dir and renames in it, by what a
// walk of dir's path costs and what the server resolves requests by.
type Walk uint8

const (
	// WalkEach: a local filesystem, where a walk is a lookup in the
	// kernel's caches: a look at dir's type, then a rename of the two
	// paths (Linux: statx and renameat2), each walking dir.
	WalkEach Walk = iota
	// WalkOnce: a network filesystem whose server resolves requests by
	// inode or handle (NFS, GlusterFS), where every walk may be round
	// trips: dir is opened so that a symlink or a file there is refused,
	// and the rename made relative to that descriptor, in the very
	// directory the open found (Linux: O_PATH|O_NOFOLLOW|O_DIRECTORY and
	// renameat2).
	WalkOnce
	// WalkOnceAsk: WalkOnce where the server resolves every request by
	// path (sshfs, ByPath): the descriptor pins nothing there, and the
	// open's walk may be answered from the client's cache, so dir's type
	// is also asked of the server itself (Linux: statx of the descriptor
	// with AT_STATX_FORCE_SYNC), right before the rename.
	WalkOnceAsk
)

// Renamed is what CheckAndRename did.
type Renamed struct {
	Done    bool  // false: nothing was done; make the portable calls
	IsDir   bool  // dir was a directory, not a symlink or a file
	StatErr error // looking at dir failed (IsDir is then false)
	Err     error // the rename failed
	// Landed: the rename failed for another reason than an existing
	// target, and yet to exists in dir now (looked at through the same
	// descriptor, right after the failure).
	Landed bool
}

// ReadNames lists the directory at path, without . and .., and without
// following a symlink there: a symlink planted at path is an error, never
// a listing of its target.
func ReadNames(path string) ([]string, error) { return retryV("list", readNames, path) }

// RemoveDir removes the empty directory at path: one rmdir, itself a
// compare-and-swap (it fails on a directory that holds anything).
func RemoveDir(path string) error {
	beforeRemove(path)
	return retry1("remove", removeDir, path)
}

// IsRealDir reports whether path is a directory, not following a symlink
// (or junction) there.
func IsRealDir(path string) (bool, error) { return retryV("stat", isRealDir, path) }

// IsLocal reports whether dir is on a local filesystem, where a watch
// (inotify, kqueue, ...) hears every change. On a network or FUSE
// filesystem it hears only what this host does through this mount, so
// waiters there must poll.
func IsLocal(dir string) bool { return isLocalFS(dir) }

// InMemory reports whether dir is on a filesystem held in memory (tmpfs,
// ramfs), where no system call waits for a device or a server: it cannot
// hang as a network mount or a dying disk can. False where unknown.
func InMemory(dir string) bool { return inMemory(dir) }

// HoldOpen opens the directory at path and keeps it open until
// CloseHeld, where the OS's watcher reports the close of a directory
// (inotify's IN_CLOSE_NOWRITE): the close at its owner's death is then
// an event to whoever watches it. Elsewhere it returns -1 and opens
// nothing.
func HoldOpen(path string) int { return holdOpen(path) }

// CloseHeld closes what HoldOpen opened; -1 is nothing.
func CloseHeld(fd int) { closeHeld(fd) }

// Owner returns the uid owning the file fi describes, where the OS has
// owners and modes that mean what Unix's do; ok is false elsewhere.
func Owner(fi fs.FileInfo) (uid int, ok bool) { return owner(fi) }
