// Package lockdir is dlock's on-disk protocol: the only code that
// creates, renames or removes anything in a lock directory. It names the
// entries (names.go), lists a lock directory (Read), makes the
// transitions (Create, Adopt, Move, SweepStages) and keeps the
// waiters' queue (queue.go), with the announcements of waiters that take
// wake-up hints (wake.go). When to make which transition (waiting,
// staleness, leases) is the dlock package's; how each system call is
// made on each OS is internal/fsys's.
//
// A lock at PATH is a directory holding exactly one state entry, an empty
// directory whose name is the lock's state (names.go gives the format):
//
//	free.E          unlocked; the last holder's fence was E
//	free.E.q        unlocked, and handed to the waiters' queue (queue.go)
//	held.E.T.S...   held by acquisition token T, fence E, heartbeat S
//
// Every transition renames that entry, and a rename succeeds only if its
// exact source name still exists: each transition is a compare-and-swap
// done by the filesystem.
//
//	create     stage/held.E0.T.0  ->  PATH   (PATH did not exist)
//	adopt      mkdir PATH/queue, then mkdir PATH/held.E0.T.0
//	           (PATH existed, empty: a user's mkdir -m 0777)
//	acquire    free.E[.q]         ->  held.(E+1).T.0
//	heartbeat  held.E.T.S         ->  held.E.T.(S+1)
//	release    held.E.T.S         ->  free.E, or free.E.q (waiters queued)
//	reclaim    held.E.T.S         ->  held.(E+1).T'.0   (stale or dead holder)
//
// Invariants, which every change here must keep:
//
//  1. PATH holds at most one state entry. Entries appear only by rename
//     from another entry, with PATH itself (create), or in an empty PATH
//     by the one process whose exclusive mkdir of PATH/queue succeeded
//     (adopt). Every lock directory holds its queue from its creation or
//     adoption on, and the queue is never removed while PATH exists, so
//     that mkdir succeeds once in PATH's life: a listing that missed an
//     entry being renamed (see 4) cannot lead to a second one.
//  2. A rename target is a name never used before in PATH: held names carry
//     a fresh random token, and free.E and free.E.q are written only by
//     the holder of fence E, which releases once, to one of the two. This
//     matters because rename(2) silently replaces an empty directory, and
//     entries are empty directories. Where the OS offers it (Linux
//     RENAME_NOREPLACE, macOS RENAME_EXCL) the kernel checks it too.
//  3. Safety never depends on clocks, mtimes or caches: they only decide
//     when a waiter tries a reclaim, and a reclaim acting on an old
//     listing fails because its source name is gone.
//  4. PATH is never removed: an empty PATH (a user's mkdir, with the mode
//     and owner its users need) is adopted as it is. Listings can miss an entry being renamed, or show its old and new
//     names at once, so seeing none never means free and seeing two is
//     never acted on: either is an unknown state, looked at again. A PATH
//     that shows only the waiters' queue, or the same two entries, for
//     TIMEOUT is reported corrupt, never repaired.
//  5. After a failed rename, the target existing proves the rename happened
//     (network filesystems may report an error for a rename that took
//     effect): targets are names only this holder uses.
//
// The spin model (model/dlock.pml) checks acquire, heartbeat, release and
// reclaim, each a Move; model/README.md maps its steps to the functions
// that make them. Create and Adopt are not modelled: each is decided by
// one system call that succeeds for one process only, while PATH is
// missing (Create's rename) or has never held a queue (Adopt's mkdir).
package lockdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
)

var (
	// ErrGone: the source entry of a transition no longer exists.
	ErrGone = errors.New("state entry is gone")
	// ErrNotLock is what errors about a path that is not a lock match:
	// dlock's ErrNotLock.
	ErrNotLock = errors.New("not a lock directory")
	// ErrCorrupt is what errors about a lock directory no waiting can
	// mend match: dlock's ErrCorrupt.
	ErrCorrupt = errors.New("lock directory is corrupt")
)

// State is what one listing of the lock directory says.
type State struct {
	Missing bool     // PATH does not exist
	Entries int      // how many state entries it holds
	E       Entry    // the state entry, when Entries == 1
	Foreign []string // other names in PATH (the first few)
	Queue   bool     // PATH holds the waiters' queue directory
	Names   string   // the state entries' names, each followed by '/'
}

// Read lists PATH. A symlink or a file at PATH is ErrNotLock.
//
// A listing taken while another process renames the entry may show it
// twice, or not at all: readdir is not atomic against rename (seen on
// ext4 and sshfs). So a count other than one stands only when listings in
// a row agree on the very same names: two for two entries (a renamed
// entry's old name never comes back), four for none (misses come in runs
// while renames follow each other). Even four can all miss it, so callers
// take no entry, or two, for an unknown state, look again later, and call
// it corrupt only when it lasts (invariant 4). On a distributed filesystem
// (GlusterFS carries a rename out brick by brick) two names can show for
// a while.
func Read(path string) (State, error) {
	var prevNames string
	agree := 0
	for i := 0; ; i++ {
		st, names, err := readOnce(path)
		if err != nil || st.Missing || st.Entries == 1 {
			return st, err
		}
		if i > 0 && names == prevNames {
			agree++
		} else {
			agree = 0
		}
		if agree == 1 && st.Entries > 1 || agree == 3 || i == 8 {
			return st, nil
		}
		prevNames = names
	}
}

// TestListing, set by tests only, changes what listings of a lock
// directory return: listings that miss a renamed entry.
var TestListing atomic.Pointer[func(path string, names []string) []string]

// readOnce is one listing; names joins the state entries' names.
func readOnce(path string) (st State, names string, err error) {
	list, err := fsys.ReadNames(path)
	if f := TestListing.Load(); f != nil && err == nil {
		list = (*f)(path, list)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			st.Missing = true
			return st, "", nil
		}
		if fi, lerr := os.Lstat(path); lerr == nil && !fi.IsDir() {
			what := "a file"
			if fi.Mode()&fs.ModeSymlink != 0 {
				what = "a symlink"
			}
			return st, "", fmt.Errorf("dlock: %s is %s: %w", path, what, ErrNotLock)
		}
		return st, "", fmt.Errorf("dlock: reading lock %s: %w", path, err)
	}
	var b strings.Builder
	slices.Sort(list)
	for _, n := range list {
		if n == QueueDir {
			st.Queue = true
			continue
		}
		if !IsStateName(n) {
			if len(st.Foreign) < 4 {
				st.Foreign = append(st.Foreign, n)
			}
			continue
		}
		st.Entries++
		if st.Entries == 1 {
			st.E = Parse(n)
		}
		b.WriteString(n)
		b.WriteByte('/')
	}
	st.Names = b.String()
	return st, st.Names, nil
}

// Check returns the error for a listing that no waiting can fix: a
// directory of things that are not a lock's. (Two state entries, or none,
// may be a listing that raced a rename: callers look again.)
func (st State) Check(path string) error {
	if st.Entries == 0 && len(st.Foreign) > 0 {
		return fmt.Errorf("dlock: %s is a directory holding %q: %w", path, st.Foreign, ErrNotLock)
	}
	return nil
}

// ManyEntriesError: PATH has shown the same two or more state entries for
// unchanged. dlock writes one; a listing racing a rename can show two for
// a moment, never for that long.
func ManyEntriesError(path string, n int, unchanged time.Duration) error {
	return fmt.Errorf("dlock: %s has shown %d state entries for %v, and dlock writes one (copied or made by hand?); remove it once nobody uses it: %w",
		path, n, unchanged, ErrCorrupt)
}

// NoEntryError: PATH holds the waiters' queue but no state entry, seen
// for unchanged (zero: in listings in a row). Nobody can acquire it:
// creating an entry in an existing PATH could let two holders in, and
// dlock removes only empty directories.
func NoEntryError(path string, unchanged time.Duration) error {
	seen := ""
	if unchanged > 0 {
		seen = " for " + unchanged.String()
	}
	return fmt.Errorf("dlock: %s is a lock directory that has shown its waiters' queue but no state entry%s (removed by hand?); remove it once nobody uses it: %w",
		path, seen, ErrCorrupt)
}

// Move performs one transition, renaming entry from to entry to in dir.
// ErrGone means from no longer exists: another process moved it first.
// walk says how: by path on a local filesystem, through a descriptor of
// dir opened for this one rename on a network one, where each walk of
// dir's path is round trips to a server (fsys.Walk).
//
// dir must still be a directory, not a symlink swapped in since we last
// looked: a path through a symlink would rename entries in a directory
// that is not the lock. (Whoever can swap dir can break the lock anyway;
// this keeps dlock from acting on their target.) So every transition
// walks dir afresh, refusing a symlink or a file there, and renames in
// the directory that walk found (through a descriptor opened for this
// one rename), or right after it. No descriptor is kept from one
// transition to the next: it would keep acting on a lock directory moved
// away, where the holder must learn at its next heartbeat that its entry
// is gone from dir. Where the server resolves every request by path
// (sshfs), a descriptor pins nothing and the walk may come from the
// client's cache: dir's type is then asked of the server itself.
func Move(dir, from, to string, walk fsys.Walk) error {
	// dir is absolute and clean (New made it so) and entry names have no
	// separator: plain concatenation, not filepath.Join's Clean, on this
	// hot path.
	sep := string(os.PathSeparator)
	if f := TestMove.Load(); f != nil {
		(*f)(dir, from, to) // a test plays a hung mount here
	}
	r := fsys.CheckAndRename(dir, from, to, walk)
	if !r.Done {
		r.IsDir, r.StatErr = fsys.IsRealDir(dir)
		if r.StatErr == nil && r.IsDir {
			r.Err = fsys.RenameEntry(dir+sep+from, dir+sep+to)
			if r.Err != nil && !errors.Is(r.Err, fs.ErrExist) && !errors.Is(r.Err, syscall.ENOTEMPTY) {
				_, serr := os.Lstat(dir + sep + to)
				r.Landed = serr == nil
			}
		}
	}
	switch {
	case r.StatErr == nil && !r.IsDir, errors.Is(r.StatErr, fs.ErrNotExist):
		return ErrGone
	case r.StatErr != nil:
		return r.StatErr
	case r.Err == nil, r.Landed:
		return nil // (landed: invariant 5, the rename took effect)
	case errors.Is(r.Err, fs.ErrExist) || errors.Is(r.Err, syscall.ENOTEMPTY):
		return fmt.Errorf("dlock: %s already exists, which dlock never lets happen: %w", dir+sep+to, ErrCorrupt)
	case errors.Is(r.Err, fs.ErrNotExist):
		return ErrGone
	}
	return r.Err
}

// Create makes the lock directory at path, already holding the entry held.
// It returns false, nil when another process created path first.
func Create(path, held, token string, perm fs.FileMode) (bool, error) {
	return createStaged(path, "lock", token, perm, []inside{{held, 0o755, false}, {QueueDir, perm, true}})
}

// inside is a directory createStaged makes in the stage: its name, its
// mode, and whether it gets that mode past the umask (and the stage's
// setgid bit), as the queue must for a lock shared by several users.
type inside struct {
	name  string
	perm  fs.FileMode
	chmod bool
}

// createStaged makes the directory path, of the kind what ("lock",
// "semaphore", ...), already holding the empty directories ins: it fills
// a staging directory beside path (StagePath), then renames it into
// place, so nobody ever sees path half made. It returns false, nil when
// another process created path first, or swept the stage while we paused:
// look again.
func createStaged(path, what, token string, perm fs.FileMode, ins []inside) (bool, error) {
	stage := StagePath(path, "new", token[:16])
	if err := os.Mkdir(stage, perm); err != nil {
		return false, stageError(path, what, err)
	}
	if f := TestStaged.Load(); f != nil {
		(*f)(stage)
	}
	made, err := fillStage(stage, perm, ins)
	if err == nil {
		if err = fsys.RenameNoReplace(stage, path); err == fsys.ErrNoExclusive {
			err = os.Rename(stage, path) // refuses an existing directory (one Lstat early)
		}
		if err == nil {
			return true, nil
		}
	}
	for _, in := range ins[:made] {
		os.Remove(filepath.Join(stage, in.name))
	}
	os.Remove(stage)
	if fi, lerr := os.Lstat(path); lerr == nil && fi.IsDir() {
		return false, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if ok, _ := fsys.IsRealDir(filepath.Dir(path)); ok {
			return false, nil // the stage was swept while we paused: again
		}
	}
	return false, fmt.Errorf("dlock: creating %s %s: %w", what, path, err)
}

// stageError is the error of the mkdir of path's stage, which names the
// stage, a name of ours: it says it in the user's words.
func stageError(path, what string, err error) error {
	parent := filepath.Dir(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("dlock: creating %s %s: its parent directory %s does not exist: %w", what, path, parent, fs.ErrNotExist)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("dlock: creating %s %s: no permission to create it in %s: %w", what, path, parent, fs.ErrPermission)
	}
	return fmt.Errorf("dlock: creating %s %s in %s: %w", what, path, parent, errors.Unwrap(err))
}

// fillStage gives the stage its mode and makes the directories ins in
// it: how many it made, and the first error.
func fillStage(stage string, perm fs.FileMode, ins []inside) (made int, err error) {
	// Give back what the umask took away, keeping the setgid bit the
	// stage inherited from a group directory: without it, the queue made
	// inside would get the creator's group, not the one the users share.
	if fi, err := os.Lstat(stage); err == nil && fi.Mode()&fs.ModeSetgid != 0 {
		perm |= fs.ModeSetgid
	}
	err = os.Chmod(stage, perm)
	for _, in := range ins {
		if err != nil {
			break
		}
		p := filepath.Join(stage, in.name)
		if err = os.Mkdir(p, in.perm); err == nil {
			made++
			if in.chmod {
				err = os.Chmod(p, in.perm|perm&fs.ModeSetgid)
			}
		}
	}
	return made, err
}

// ErrRetry is Container's answer when the directory changed while it
// looked (another process made it, or swept our stage): look again.
var ErrRetry = errors.New("retry")

// Container makes sure dir is a dlock container of the kind what
// ("semaphore", "reader/writer lock"), whose marker entry is marker
// (KIND.VALUE: "size.3"), creating it with the marker if it is missing;
// now and timeout judge the stages a dead creator left (SweepStages).
// Names for which member is true belong there; any other name means it
// is not ours: ErrNotLock. An existing empty dir is marked in place.
func Container(dir, what, marker string, perm fs.FileMode, now time.Time, timeout time.Duration, member func(string) bool) error {
	kind, _, _ := strings.Cut(marker, ".")
	names, err := fsys.ReadNames(dir)
	if errors.Is(err, fs.ErrNotExist) {
		created, err := createStaged(dir, what, NewToken(), perm, []inside{{marker, 0o755, false}})
		switch {
		case err != nil:
			return err
		case !created:
			return ErrRetry
		}
		SweepStages(dir, now, timeout, func(n string) bool { return strings.HasPrefix(n, kind+".") })
		return nil
	}
	if err != nil {
		if fi, lerr := os.Lstat(dir); lerr == nil && !fi.IsDir() {
			return fmt.Errorf("dlock: %s is not a directory (a file or a symlink): %w", dir, ErrNotLock)
		}
		return fmt.Errorf("dlock: reading %s: %w", dir, err)
	}
	if len(names) == 0 {
		return markEmpty(dir, what, marker)
	}
	found := ""
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, kind+"."):
			if found != "" {
				return fmt.Errorf("dlock: %s has two markers %s and %s: %w", dir, found, n, ErrCorrupt)
			}
			found = n
		case !member(n):
			return fmt.Errorf("dlock: %s holds %q, which is not ours: %w", dir, n, ErrNotLock)
		}
	}
	switch found {
	case marker:
		return nil
	case "":
		return fmt.Errorf("dlock: %s has no %s marker: %w", dir, kind, ErrNotLock)
	}
	return fmt.Errorf("dlock: %s is marked %s, not %s: opened with another size", dir, found, marker)
}

// markEmpty marks an empty directory made by hand (mkdir -m 0777) as a
// container, in place, keeping its mode and owner. Takers of one size
// make the same marker (one mkdir wins, the other sees it); takers of two
// sizes at once leave two markers, which every later look refuses: an
// error, never two holders of one slot.
func markEmpty(dir, what, marker string) error {
	err := os.Mkdir(filepath.Join(dir, marker), 0o755)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return ErrRetry // look again: it is ours now, or another's
	}
	return fmt.Errorf("dlock: marking the empty directory %s as a %s: %w", dir, what, errors.Unwrap(err))
}

// TestMove, set by tests only, runs before each transition's rename.
var TestMove atomic.Pointer[func(dir, from, to string)]

// TestStaged, set by tests only, runs when Create has made its stage.
var TestStaged atomic.Pointer[func(stage string)]

// StagePath names a staging directory beside path: kind "new" while a
// creator fills it, "old" once a sweep has claimed it.
func StagePath(path, kind, tok string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".dlock-"+kind+"-"+tok)
}

// SweepStages removes what creators of path left beside it when they died
// between making their staging directory and renaming it into place: a
// directory named as StagePath names them, unchanged for timeout, holding
// only empty directories whose names member accepts. Each is first claimed
// by a rename, so a creator that was only paused finds its stage gone and
// tries again, and then emptied with rmdir alone, which removes nothing
// that holds anything. A leftover exists only where a creation failed, so
// whoever creates path next sweeps: once in a lock path's life, one
// listing of its parent. Failures are ignored: this is tidying.
func SweepStages(path string, now time.Time, timeout time.Duration, member func(string) bool) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+".dlock-"
	names, err := fsys.ReadNames(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, prefix)
		kind, tok, _ := strings.Cut(rest, "-")
		if !ok || kind != "new" && kind != "old" || !IsHex(tok, 16, 16) {
			continue
		}
		sweepStage(path, filepath.Join(dir, n), kind, tok, now, timeout, member)
	}
}

// sweepStage removes one staging directory of path, of the given kind and
// token, if it has been unchanged for timeout and holds only members.
func sweepStage(path, stage, kind, tok string, now time.Time, timeout time.Duration, member func(string) bool) {
	fi, err := os.Lstat(stage)
	if err != nil || !fi.IsDir() || now.Sub(fi.ModTime()) < timeout {
		return
	}
	ours := func() bool {
		inside, err := fsys.ReadNames(stage)
		return err == nil && !slices.ContainsFunc(inside, func(c string) bool { return !member(c) })
	}
	if !ours() {
		return
	}
	if kind == "new" {
		claimed := StagePath(path, "old", tok)
		if fsys.RenameEntry(stage, claimed) != nil {
			return
		}
		stage = claimed
	}
	inside, _ := fsys.ReadNames(stage) // again: its creator may have added to it
	for _, c := range inside {
		p := filepath.Join(stage, c)
		if ok, _ := fsys.IsRealDir(p); ok && member(c) {
			fsys.RemoveDir(p)
		}
	}
	fsys.RemoveDir(stage)
}

// StageMember: what a lock's staging directory holds.
func StageMember(name string) bool { return IsStateName(name) || name == QueueDir }

// Adopt makes the existing empty directory path a lock held by the entry
// held (adopt), keeping path's mode and owner: the queue, made first and
// with path's mode, is the claim only one process wins (invariant 1). It
// returns false, nil when another process adopted or created path first:
// look again. If the entry cannot be made after the claim, the claim is
// given back (an empty queue is removed) so that another may adopt.
func Adopt(path, held string) (bool, error) {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return false, nil // gone, or swapped: look again
	}
	perm := fi.Mode() & (fs.ModePerm | fs.ModeSetgid)
	q := filepath.Join(path, QueueDir)
	if err := os.Mkdir(q, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("dlock: taking the empty lock directory %s: %w", path, errors.Unwrap(err))
	}
	// The claim proves that nobody else adopted path, not that it is
	// empty: the listing that showed it empty may have come from a
	// client's cache (sshfs keeps one for 20 s), and a lock directory made
	// without a queue (by hand, or by an older dlock) holds a state entry
	// the claim does not conflict with. A listing made after our own mkdir
	// in path is the server's (the client drops what it cached of a
	// directory it changed): if it shows any state entry, give the claim
	// back and look again, as a waiter.
	if st, rerr := Read(path); rerr != nil || st.Entries != 0 || len(st.Foreign) != 0 {
		fsys.RemoveDir(q)
		return false, nil
	}
	// Waiters of every user who may take the lock put tickets there.
	err = os.Chmod(q, perm)
	if err == nil {
		if err = os.Mkdir(filepath.Join(path, held), 0o755); err != nil {
			if _, serr := os.Lstat(filepath.Join(path, held)); serr == nil {
				err = nil // invariant 5: made, though the reply said not
			}
		}
	}
	if err != nil {
		fsys.RemoveDir(q)
		return false, fmt.Errorf("dlock: taking the empty lock directory %s: %w", path, errors.Unwrap(err))
	}
	return true, nil
}
