package dlock

import (
	"errors"
	"fmt"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

// Sentinel errors. Test for them with errors.Is: the errors this package
// returns wrap them with the path and, where known, who holds the lock.
var (
	// ErrBusy means the lock was held by another holder for all of PATIENCE.
	// The error is a *BusyError naming the holder.
	ErrBusy = errors.New("lock is busy")

	// ErrNotHeld means Unlock was called on a Lock that does not hold its lock.
	ErrNotHeld = errors.New("lock is not held")

	// ErrLost means the lock was reclaimed by another holder or removed
	// while it was held, or that its deadline passed (no refresh succeeded
	// for TIMEOUT - MARGIN, see WithMargin), after which another may
	// reclaim it. The error is a *LostError.
	ErrLost = errors.New("lock was lost")

	// ErrHeld means Lock or TryLock was called on a Lock that already holds
	// its lock, or while another goroutine is acquiring it with the same
	// Lock. A Lock is not reentrant; use one Lock per holder.
	ErrHeld = errors.New("already held, or being acquired, through this value")

	// ErrNotLock means something other than a dlock lock directory is at the
	// path: a regular file, a symlink, or a directory holding files that are
	// not a lock's. dlock never changes or removes it; waiting will not help.
	ErrNotLock = lockdir.ErrNotLock

	// ErrCorrupt means the lock directory holds more than one state entry,
	// which dlock never writes, or has shown its waiters' queue and no
	// state entry for TIMEOUT (someone removed the entry by hand). It is
	// not touched; remove it by hand once nobody uses it.
	ErrCorrupt = lockdir.ErrCorrupt

	// ErrUnsafeFS means the lock's path is on a filesystem where dlock's
	// compare-and-swap does not hold, so two processes could hold the lock at
	// once: a FUSE client known to rename by handle or by copying, such as
	// smbnetfs or GNOME's gvfs (SMB through libsmbclient), or s3fs. dlock
	// refuses at once, before it creates anything; waiting will not help. The
	// error names the mount, its type, and what to use instead (for SMB, the
	// kernel's client: mount -t cifs).
	//
	// Only Linux is checked (the mount table in /proc/self/mountinfo). The
	// environment variable DLOCK_UNSAFE_FS=allow turns the check off, for
	// tests that show what goes wrong on such a filesystem (two holders at
	// once); with it, dlock's guarantees do not hold there.
	ErrUnsafeFS = fsys.ErrUnsafe
)

// BusyError is the error Lock returns when PATIENCE ran out (it matches
// ErrBusy with errors.Is). It names the lock, its holder as last seen,
// and how long the caller waited.
type BusyError struct {
	Path   string        // the lock's path
	Holder Holder        // the holder seen at the last attempt
	Age    time.Duration // how long ago the holder last refreshed the lock, by the waiter's clock
	Waited time.Duration // how long Lock waited
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("dlock: %s: lock is busy: held by %s (refreshed %s ago, fence %d); waited %s",
		e.Path, e.Holder, e.Age.Round(time.Millisecond), e.Holder.Fence, e.Waited.Round(time.Millisecond))
}

// LostError is the error Unlock returns when the lock was lost while held
// (it matches ErrLost with errors.Is): why, and who holds it now as far as
// one look could tell.
type LostError struct {
	Path  string // the lock's path
	Fence uint64 // the fence of the acquisition that was lost
	Why   string // why it counts as lost
	Now   string // what the lock directory showed afterwards, for people
}

func (e *LostError) Error() string {
	return fmt.Sprintf("dlock: %s: lost the lock (fence %d): %s; %s", e.Path, e.Fence, e.Why, e.Now)
}

// Is reports whether target is ErrLost.
func (e *LostError) Is(target error) bool { return target == ErrLost }

// Is reports whether target is ErrBusy.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// stuckError: Lock gave up while an attempt was waiting for the filesystem.
type stuckError struct {
	path  string
	cause error
}

func (e *stuckError) Error() string {
	return fmt.Sprintf("dlock: locking %s: gave up while an attempt was still waiting for the filesystem (a hung mount, or a machine too loaded to run it in time?): %v", e.path, e.cause)
}

func (e *stuckError) Unwrap() error { return e.cause }
