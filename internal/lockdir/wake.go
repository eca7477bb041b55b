package lockdir

// Announcements of waiters that take wake-up hints (internal/hint).
//
// A waiter that wants to hear of a release at once, rather than at its
// next poll, announces where it listens: an empty directory
//
//	PATH/queue/wake/NAME
//
// (internal/hint gives NAME: TIME.TOKEN.ADDR). A releaser that takes
// hints lists PATH/queue/wake after its release and sends each announced
// waiter a datagram. The directory wake is made by the first announcement
// and removed by the last waiter to leave (rmdir, which fails while it
// holds anything), so that an uncontended release pays one failed open
// for it. It lives in the queue, not in PATH, because a listing of PATH
// that missed the state entry (a rename under way) and showed anything
// but the queue would be called "not a lock" (Read, Check), by this
// version and the ones before it; in the queue, names that are not
// tickets are ignored (IsTicket).
//
// Nothing here decides anything: a missing, stale or foreign announcement
// costs a wake-up, or a datagram to nobody.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lockdir/dlock/internal/fsys"
)

// WakeDir is the announcements' directory in the queue.
const WakeDir = "wake"

// wakeDir is PATH/queue/wake.
func wakeDir(path string) string { return filepath.Join(path, QueueDir, WakeDir) }

// Announce makes the announcement name in the lock at path, and the
// announcements' directory if it is missing (with perm, the lock's
// permissions: every waiter of the lock writes in it). It fails if PATH
// has no queue (not a lock, or a lock of a version before queues).
func Announce(path, name string, perm fs.FileMode) error {
	dir := wakeDir(path)
	var err error
	for range 3 {
		if err = os.Mkdir(filepath.Join(dir, name), 0o755); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// No wake directory (or it was removed by the last waiter to
		// leave, a moment ago): make it. The queue must exist already.
		if err = os.Mkdir(dir, perm); err == nil {
			err = os.Chmod(dir, perm) // not reduced by the umask
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return err
}

// Renew renames our announcement from old to name (a newer TIME), so that
// releasers do not take it for a dead waiter's.
func Renew(path, old, name string) error {
	dir := wakeDir(path)
	return fsys.RenameEntry(filepath.Join(dir, old), filepath.Join(dir, name))
}

// Withdraw removes the announcement name, and the announcements'
// directory if it is then empty. It is also how a releaser removes a dead
// waiter's. An rmdir removes only an empty directory: nothing else is
// ever removed.
func Withdraw(path, name string) {
	dir := wakeDir(path)
	fsys.RemoveDir(filepath.Join(dir, name))
	fsys.RemoveDir(dir) // fails while others announce: then it stays
}

// Announcements lists the announcements in the lock at path: none, with
// no error, if there is no announcements' directory.
func Announcements(path string) ([]string, error) {
	names, err := fsys.ReadNames(wakeDir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}
