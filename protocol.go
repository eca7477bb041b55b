package dlock

// The on-disk protocol. This file is the only code that creates, renames
// or removes anything.
//
// A lock at PATH is a directory holding exactly one state entry, an empty
// directory whose name is the lock's state (record.go gives the format):
//
//	free.E          unlocked; the last holder's fence was E
//	held.E.T.S...   held by acquisition token T, fence E, heartbeat S
//
// Every transition renames that entry, and a rename succeeds only if its
// exact source name still exists: each transition is a compare-and-swap
// done by the filesystem.
//
//	create     stage/held.E0.T.0  ->  PATH   (PATH did not exist)
//	acquire    free.E             ->  held.(E+1).T.0
//	heartbeat  held.E.T.S         ->  held.E.T.(S+1)
//	release    held.E.T.S         ->  free.E
//	reclaim    held.E.T.S         ->  held.(E+1).T'.0   (stale or dead holder)
//
// Invariants, which every change here must keep:
//
//  1. PATH holds at most one state entry. Nothing here ever mkdirs inside an
//     existing PATH; entries appear only by rename from another entry, or
//     with PATH itself (create).
//  2. A rename target is a name never used before in PATH: held names carry
//     a fresh random token, and free.E is written only by the holder of
//     epoch E. This matters because rename(2) silently replaces an empty
//     directory, and entries are empty directories. Where the OS offers it
//     (Linux RENAME_NOREPLACE, macOS RENAME_EXCL) the kernel checks it too.
//  3. Safety never depends on clocks, mtimes or caches: they only decide
//     when a waiter tries a reclaim, and a reclaim acting on an old
//     listing fails because its source name is gone.
//  4. PATH is never removed while it holds an entry. An empty PATH (a
//     user's mkdir, a half-made lock of another tool) is removed with
//     rmdir, itself a compare-and-swap, only after TIMEOUT unchanged.
//     Listings can miss an entry being renamed, or show its old and new
//     names at once, so seeing none never means free and seeing two is
//     never acted on: either is an unknown state, looked at again. A PATH
//     that shows only the waiters' queue, or the same two entries, for
//     TIMEOUT is reported corrupt, never repaired.
//  5. After a failed rename, the target existing proves the rename happened
//     (network filesystems may report an error for a rename that took
//     effect): targets are names only this holder uses.

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/proc"
)

var (
	// errGone: the source entry of a transition no longer exists.
	errGone = errors.New("state entry is gone")
)

// dirState is what one listing of the lock directory says.
type dirState struct {
	missing bool     // PATH does not exist
	entries int      // how many state entries it holds
	e       entry    // the state entry, when entries == 1
	foreign []string // other names in PATH (the first few)
	queue   bool     // PATH holds the waiters' queue directory
	names   string   // the state entries' names, each followed by '/'
}

// readState lists PATH. A symlink or a file at PATH is ErrNotLock.
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
func readState(path string) (dirState, error) {
	var prevNames string
	agree := 0
	for i := 0; ; i++ {
		st, names, err := readStateOnce(path)
		if err != nil || st.missing || st.entries == 1 {
			return st, err
		}
		if i > 0 && names == prevNames {
			agree++
		} else {
			agree = 0
		}
		if agree == 1 && st.entries > 1 || agree == 3 || i == 8 {
			return st, nil
		}
		prevNames = names
	}
}

// testListing, set by tests only, changes what listings of a lock
// directory return: listings that miss a renamed entry.
var testListing atomic.Pointer[func(path string, names []string) []string]

// readStateOnce is one listing; names joins the state entries' names.
func readStateOnce(path string) (st dirState, names string, err error) {
	list, err := fsys.ReadNames(path)
	if f := testListing.Load(); f != nil && err == nil {
		list = (*f)(path, list)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			st.missing = true
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
		if n == queueDir {
			st.queue = true
			continue
		}
		if !isStateName(n) {
			if len(st.foreign) < 4 {
				st.foreign = append(st.foreign, n)
			}
			continue
		}
		st.entries++
		if st.entries == 1 {
			st.e = parseEntry(n)
		}
		b.WriteString(n)
		b.WriteByte('/')
	}
	st.names = b.String()
	return st, st.names, nil
}

// check returns the error for a listing that no waiting can fix: a
// directory of things that are not a lock's. (Two state entries, or none,
// may be a listing that raced a rename: callers look again.)
func (st dirState) check(path string) error {
	if st.entries == 0 && len(st.foreign) > 0 {
		return fmt.Errorf("dlock: %s is a directory holding %q: %w", path, st.foreign, ErrNotLock)
	}
	return nil
}

// manyEntriesError: PATH has shown the same two or more state entries for
// unchanged. dlock writes one; a listing racing a rename can show two for
// a moment, never for that long.
func manyEntriesError(path string, n int, unchanged time.Duration) error {
	return fmt.Errorf("dlock: %s has shown %d state entries for %v, and dlock writes one (copied or made by hand?); remove it once nobody uses it: %w",
		path, n, unchanged, ErrCorrupt)
}

// noEntryError: PATH holds the waiters' queue but no state entry, seen
// for unchanged (zero: in listings in a row). Nobody can acquire it:
// creating an entry in an existing PATH could let two holders in, and
// dlock removes only empty directories.
func noEntryError(path string, unchanged time.Duration) error {
	seen := ""
	if unchanged > 0 {
		seen = " for " + unchanged.String()
	}
	return fmt.Errorf("dlock: %s is a lock directory that has shown its waiters' queue but no state entry%s (removed by hand?); remove it once nobody uses it: %w",
		path, seen, ErrCorrupt)
}

// move performs one transition, renaming entry from to entry to in dir.
// errGone means from no longer exists: another process moved it first.
//
// dir must still be a directory, not a symlink swapped in since we last
// looked: renames go by path (an fd would keep acting on a lock directory
// moved away), and a path through a symlink would rename entries in a
// directory that is not the lock. (Whoever can swap dir can break the
// lock anyway; this keeps dlock from acting on their target.)
func move(dir, from, to string) error {
	// dir is absolute and clean (New made it so) and entry names have no
	// separator: plain concatenation, not filepath.Join's Clean, on this
	// hot path.
	sep := string(os.PathSeparator)
	if f := testMove.Load(); f != nil {
		(*f)(from, to) // a test plays a hung mount here
	}
	isDir, statErr, err, done := fsys.CheckAndRename(dir, from, to)
	if !done {
		isDir, statErr = fsys.IsRealDir(dir)
		if statErr == nil && isDir {
			err = fsys.RenameEntry(dir+sep+from, dir+sep+to)
		}
	}
	if statErr != nil || !isDir {
		if statErr == nil || errors.Is(statErr, fs.ErrNotExist) {
			return errGone
		}
		return statErr
	}
	if err == nil {
		return nil
	}
	dst := dir + sep + to
	if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
		return fmt.Errorf("dlock: %s already exists, which dlock never lets happen: %w", dst, ErrCorrupt)
	}
	if _, serr := os.Lstat(dst); serr == nil {
		return nil // invariant 5: the rename took effect
	}
	if errors.Is(err, fs.ErrNotExist) {
		return errGone
	}
	return err
}

// create makes the lock directory at path, already holding the entry held.
// It returns false, nil when another process created path first.
func create(path, held, token string, perm fs.FileMode) (bool, error) {
	stage := stagePath(path, "new", token[:16])
	if err := os.Mkdir(stage, perm); err != nil {
		// (The error names the stage, a name of ours: say it in the
		// user's words.)
		parent := filepath.Dir(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return false, fmt.Errorf("dlock: creating lock %s: its parent directory %s does not exist: %w", path, parent, fs.ErrNotExist)
		case errors.Is(err, fs.ErrPermission):
			return false, fmt.Errorf("dlock: creating lock %s: no permission to create it in %s: %w", path, parent, fs.ErrPermission)
		}
		return false, fmt.Errorf("dlock: creating lock %s in %s: %w", path, parent, errors.Unwrap(err))
	}
	if f := testStaged.Load(); f != nil {
		(*f)(stage)
	}
	entry := filepath.Join(stage, held)
	// Give back what the umask took away, keeping the setgid bit the
	// stage inherited from a group directory: without it, the queue made
	// inside would get the creator's group, not the one the users share.
	if fi, err := os.Lstat(stage); err == nil && fi.Mode()&fs.ModeSetgid != 0 {
		perm |= fs.ModeSetgid
	}
	err := os.Chmod(stage, perm)
	if err == nil {
		err = os.Mkdir(entry, 0o755)
	}
	queue := filepath.Join(stage, queueDir)
	if err == nil {
		err = os.Mkdir(queue, perm)
	}
	if err == nil {
		err = os.Chmod(queue, perm)
	}
	if err == nil {
		if err = fsys.RenameNoReplace(stage, path); err == fsys.ErrNoExclusive {
			err = os.Rename(stage, path) // refuses an existing directory (one Lstat early)
		}
		if err == nil {
			return true, nil
		}
	}
	os.Remove(queue)
	os.Remove(entry)
	os.Remove(stage)
	if fi, lerr := os.Lstat(path); lerr == nil && fi.IsDir() {
		return false, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if ok, _ := fsys.IsRealDir(filepath.Dir(path)); ok {
			return false, nil // the stage was swept while we paused: again
		}
	}
	return false, fmt.Errorf("dlock: creating lock %s: %w", path, err)
}

// testMove, set by tests only, runs before each transition's rename.
var testMove atomic.Pointer[func(from, to string)]

// testStaged, set by tests only, runs when create has made its stage.
var testStaged atomic.Pointer[func(stage string)]

// stagePath names a staging directory beside path: kind "new" while a
// creator fills it, "old" once a sweep has claimed it.
func stagePath(path, kind, tok string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".dlock-"+kind+"-"+tok)
}

// sweepStages removes what creators of path left beside it when they died
// between making their staging directory and renaming it into place: a
// directory named as stagePath names them, unchanged for timeout, holding
// only empty directories whose names member accepts. Each is first claimed
// by a rename, so a creator that was only paused finds its stage gone and
// tries again, and then emptied with rmdir alone, which removes nothing
// that holds anything. A leftover exists only where a creation failed, so
// whoever creates path next sweeps: once in a lock path's life, one
// listing of its parent. Failures are ignored: this is tidying.
func sweepStages(path string, now time.Time, timeout time.Duration, member func(string) bool) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+".dlock-"
	names, err := fsys.ReadNames(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, prefix)
		kind, tok, _ := strings.Cut(rest, "-")
		if !ok || kind != "new" && kind != "old" || !isHex(tok, 16, 16) {
			continue
		}
		stage := filepath.Join(dir, n)
		fi, err := os.Lstat(stage)
		if err != nil || !fi.IsDir() || now.Sub(fi.ModTime()) < timeout {
			continue
		}
		ours := func() bool {
			inside, err := fsys.ReadNames(stage)
			return err == nil && !slices.ContainsFunc(inside, func(c string) bool { return !member(c) })
		}
		if !ours() {
			continue
		}
		if kind == "new" {
			claimed := stagePath(path, "old", tok)
			if fsys.RenameEntry(stage, claimed) != nil {
				continue
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
}

// stageMember: what a lock's staging directory holds.
func stageMember(name string) bool { return isStateName(name) || name == queueDir }

// removeEmpty removes path if it is an empty directory (invariant 4).
func removeEmpty(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
		return nil // gone, or no longer empty: look again
	}
	return fmt.Errorf("dlock: removing empty lock directory %s: %w", path, err)
}

// attempt makes one try at acquiring the lock. When another holds it, it
// returns the entry seen and when that holder becomes stale. Called with
// l.op held.
func (l *Lock) attempt() outcome {
	now := l.cfg.clock.Now()
	l.mu.Lock()
	token := l.freshToken()
	l.event = entry{} // a look supersedes what events said
	l.mu.Unlock()
	if l.testStep != nil {
		l.testStep("look")
	}
	// Fast path: the free entry this Lock released last is likely still
	// there; trying it costs one rename instead of a listing.
	if l.lastFree.name != "" {
		e := l.lastFree
		l.lastFree = entry{}
		if ok, err := l.take(e, token, false); ok || err != nil {
			return outcome{ok: ok, err: err}
		}
	}
	if o, done := l.attemptWatched(now, token); done {
		return o
	}
	for range 4 {
		st, err := readState(l.path)
		// What the listing shows was there when it ended: an entry seen
		// is seen from then on, not from before the listing (a pause
		// there must not age it).
		seenAt := l.cfg.clock.Now()
		if err == nil {
			err = st.check(l.path)
		}
		if err != nil {
			return outcome{err: err}
		}
		switch {
		case st.missing:
			now := l.cfg.clock.Now()
			epoch := uint64(now.UnixNano()) // fences never go back, even if PATH was deleted
			name := heldName(epoch, token, 0, now, now, l.cfg.timeout)
			perm := l.cfg.perm
			if l.createPerm != 0 {
				perm = l.createPerm
			}
			created, err := create(l.path, name, token, perm)
			if err != nil || created {
				if created {
					l.acquired(epoch, token, name, now, "created")
					created = l.confirm(now)
					sweepStages(l.path, now, l.cfg.timeout, stageMember)
				}
				return outcome{ok: created, err: err}
			}
		case st.entries != 1:
			// An empty directory, one left with only the waiters' queue,
			// listings that all missed the entry, or that showed it under
			// two names (see readState). An unknown state, judged after
			// TIMEOUT unchanged (invariant 4); a waiter looks again at its
			// poll interval.
			e := entry{holder: Holder{Unknown: true, Entry: st.names}}
			if at, _ := l.staleAt(now, seenAt, e); now.Before(at) {
				e.observed = l.seenSince
				return outcome{seen: e, staleAt: at}
			}
			switch {
			case st.entries > 1:
				return outcome{err: manyEntriesError(l.path, st.entries, l.cfg.timeout)}
			case st.queue:
				return outcome{err: noEntryError(l.path, l.cfg.timeout)}
			}
			l.logWarn("removing empty lock directory", "unchanged for", l.cfg.timeout)
			// Made by hand, perhaps with a mode for several users: the
			// lock made in its place keeps that mode.
			if fi, err := os.Lstat(l.path); err == nil && fi.IsDir() {
				l.createPerm = fi.Mode() & (fs.ModePerm | fs.ModeSetgid)
			}
			if err := removeEmpty(l.path); err != nil {
				return outcome{err: err}
			}
		case st.e.free:
			if ok, err := l.take(st.e, token, false); ok || err != nil {
				return outcome{ok: ok, err: err}
			}
		default:
			at, why := l.staleAt(now, seenAt, st.e)
			if now.Before(at) {
				return outcome{seen: st.e, staleAt: at}
			}
			if ok, err := l.take(st.e, token, true); ok || err != nil {
				if ok {
					l.logWarn("reclaimed lock", "reason", why, "from", st.e.holder.String(), "entry", st.e.name)
				}
				return outcome{ok: ok, err: err}
			}
		}
	}
	// Four listings each raced with another process: report busy; the
	// caller waits and tries again.
	st, err := readState(l.path)
	return outcome{seen: st.e, err: err}
}

// attemptWatched is the attempt of a waiter that has been watching a
// holder's entry. The entry can only go by a transition, and a name never
// comes back once gone, so if it is still there nothing has changed: one
// lstat on a network filesystem's server instead of a listing's dozen or
// more operations, on every poll. Once it is gone, the holder of epoch E
// most likely released to free.E, which is tried before a listing. done
// is false when a listing must look (or the holder is stale: the listing
// reclaims it). Called with l.op held.
func (l *Lock) attemptWatched(now time.Time, token string) (o outcome, done bool) {
	e := l.seenHeld
	if !l.seen || e.name == "" || l.seenName != e.name {
		return outcome{}, false
	}
	if ok, err := fsys.IsRealDir(l.path + string(os.PathSeparator) + e.name); ok && err == nil {
		seenAt := l.cfg.clock.Now()
		if at, _ := l.staleAt(now, seenAt, e); now.Before(at) {
			return outcome{seen: e, staleAt: at}, true
		}
		return outcome{}, false
	}
	if ok, err := l.take(entry{name: freeName(e.epoch), free: true, epoch: e.epoch}, token, false); ok || err != nil {
		return outcome{ok: ok, err: err}, true
	}
	return outcome{}, false
}

// take moves the free or stale entry e to a new held entry of ours
// (acquire or reclaim). false, nil means another process moved e first.
// The new entry's times, and the deadline's start, are read right before
// the rename is issued.
func (l *Lock) take(e entry, token string, reclaim bool) (bool, error) {
	now := l.cfg.clock.Now()
	epoch := e.epoch + 1
	if e.holder.Unknown && !e.free {
		epoch = max(uint64(now.UnixNano()), 1) // unknown epoch: seed afresh
	}
	name := heldName(epoch, token, 0, now, now, l.cfg.timeout)
	switch err := move(l.path, e.name, name); {
	case err == nil:
		if l.testStep != nil {
			l.testStep("taken")
		}
		how := "acquired"
		if reclaim {
			how = "reclaimed"
		}
		l.acquired(epoch, token, name, now, how)
		return l.confirm(now), nil
	case errors.Is(err, errGone):
		return false, nil
	case errors.Is(err, syscall.EXDEV):
		// overlayfs renames only directories it made itself: the lock
		// directory came with a lower layer, a container image's most
		// likely. Nothing here can change that.
		return false, fmt.Errorf("dlock: acquiring lock %s: its state entry cannot be renamed where it is, most likely in a lower layer of an overlay filesystem (a lock directory baked into a container image); remove it from the image, or keep locks on a volume or tmpfs: %w", l.path, err)
	default:
		return false, fmt.Errorf("dlock: acquiring lock %s: %w", l.path, err)
	}
}

// confirm is called right after an acquiring rename whose entry carries
// the time now. If this process was paused between reading the clock and
// the rename (or the rename took long), the deadline, counted from now, is
// that much nearer, and others count the new entry as that much older: so
// it is refreshed at once. If it is already gone, it was never ours to
// use: confirm reports false and the attempt goes on. Called with l.op
// held.
func (l *Lock) confirm(now time.Time) bool {
	late := l.cfg.clock.Since(now)
	if late < l.cfg.refresh {
		return true
	}
	issued := l.cfg.clock.Now()
	err := l.refresh(issued)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, errGone):
		l.held = false
		l.timer.Stop()
		l.expiry.Stop()
		l.logWarn("lock taken over while acquiring it", "paused for", late)
		return false
	case err == nil && !l.isLost:
		l.extend(issued)
	}
	return true // refreshed, or the heartbeat will retry
}

// staleAt returns when the entry e becomes reclaimable by this Lock, and
// why. A holder is stale once it has not refreshed for its own TIMEOUT
// (recorded in the entry, so a waiter with a shorter TIMEOUT cannot steal
// early), as this Lock can tell:
//   - by how long this Lock has seen the very same entry unchanged on its
//     own clock. The entry was made by a rename the holder issued no
//     later than that, so this never ends before the holder's deadline
//     (lease.go), whatever the clocks say;
//   - by the refresh time the holder wrote with its clock, once it is
//     older than TIMEOUT plus the clock-skew bound (WithMaxClockSkew), so
//     that a newcomer can judge a long-dead lock at once. A holder whose
//     clock is behind ours by less than the bound is never reclaimed by
//     this early.
//
// A holder on this host whose process is gone is stale at once. For an
// unknown state (e.Holder.Unknown: no entry, two, or one that does not
// parse) only the observation counts, with this Lock's TIMEOUT.
//
// now is when the attempt began, seenAt when the listing that showed e
// ended. Called with l.op held.
func (l *Lock) staleAt(now, seenAt time.Time, e entry) (time.Time, string) {
	key := e.name
	if key == "" {
		key = "?" + e.holder.Entry // a picture of the directory
	}
	// A clock that went back restarts the observation: "seen unchanged
	// for TIMEOUT" must be TIMEOUT of this clock going forward.
	if !l.seen || l.seenName != key || seenAt.Before(l.seenSince) {
		if !e.holder.Unknown {
			var before time.Time // a look that did not show e yet
			if l.seen && l.seenName != key {
				before = l.seenLast
			}
			l.checkSkew(e.holder, before, seenAt)
		}
		l.seen, l.seenName, l.seenSince = true, key, seenAt
		l.seenHeld = entry{}
		if !e.holder.Unknown && !e.free {
			l.seenHeld = e
		}
	}
	l.seenLast = seenAt
	timeout := l.cfg.timeout
	if !e.holder.Unknown {
		timeout = e.holder.Timeout
	}
	// Remaining durations, each from a difference of times of one kind:
	// the real clock's monotonic reading for what we saw, wall time for
	// the holder's record (which has no monotonic reading to compare).
	left := timeout - now.Sub(l.seenSince)
	why := "unchanged for its TIMEOUT, by our clock"
	if !e.holder.Unknown {
		if byBeat := trustAfter(timeout, l.cfg.maxSkew) - now.Sub(e.holder.Beat); byBeat < left {
			left, why = byBeat, "not refreshed for its TIMEOUT plus the clock-skew bound, by its clock"
		}
		if left > 0 && l.holderDead(now, e) {
			return now, "holder process is gone"
		}
	}
	return now.Add(left), why
}

// trustAfter is how old a holder's written refresh time must be before a
// newcomer may trust it: its TIMEOUT plus the clock-skew bound, saturated
// (a record may carry any TIMEOUT up to the largest duration, and the sum
// must not wrap round to a negative age that reclaims a live holder).
func trustAfter(timeout, maxSkew time.Duration) time.Duration {
	if timeout > math.MaxInt64-maxSkew {
		return math.MaxInt64
	}
	return timeout + maxSkew
}

// checkSkew logs, once per holder, a holder whose clock is far off ours as
// far as a waiter can tell: the refresh time it wrote is later than when
// we saw its entry, or earlier than a look of ours (before) that did not
// show the entry yet. Called with l.op held.
func (l *Lock) checkSkew(h Holder, before, seenAt time.Time) {
	if l.cfg.logger == nil || l.skewTold == h.Token {
		return
	}
	tol := min(time.Second, l.cfg.maxSkew/2)
	dir, off := "ahead of", h.Beat.Sub(seenAt)
	if off <= tol {
		if before.IsZero() {
			return
		}
		dir, off = "behind", before.Sub(h.Beat)
		if off <= tol {
			return
		}
	}
	l.skewTold = h.Token
	l.logWarn("the holder's clock is far off this host's", "holder", h.String(), "its clock is at least "+off.Round(time.Millisecond).String(), dir+" ours",
		"max clock skew", l.cfg.maxSkew)
}

// holderDead is holderDead for the entry e, asked again for the same
// holder process at most once per poll interval: a woken waiter need not
// read /proc (tens of µs) on every event, nor for every new entry of a
// holder it found alive a moment ago. The answer only decides when a
// reclaim is tried (invariant 3).
func (l *Lock) holderDead(now time.Time, e entry) bool {
	k := aliveKey{e.holder.PID, e.holder.pstart, e.holder.HostID}
	if k.host == self().hostID && proc.SeenDead(k.pid, k.pstart) {
		return true
	}
	for _, a := range l.alive {
		if a.key == k && now.Sub(a.at) < l.cfg.poll && !now.Before(a.at) {
			return false
		}
	}
	if holderDead(e.holder) {
		return true
	}
	oldest := 0
	for i, a := range l.alive {
		if a.key == k {
			oldest = i
			break
		}
		if a.at.Before(l.alive[oldest].at) {
			oldest = i
		}
	}
	l.alive[oldest] = aliveAt{k, now}
	return false
}

type aliveKey struct {
	pid    int
	pstart uint64
	host   string
}

type aliveAt struct {
	key aliveKey
	at  time.Time
}

// refresh renames our held entry to its next heartbeat name, issued at
// now. Called with l.op held.
func (l *Lock) refresh(now time.Time) error {
	next := heldName(l.Fence(), l.token, l.seq+1, l.since, now, l.cfg.timeout)
	if err := move(l.path, l.cur, next); err != nil {
		return err
	}
	l.cur, l.seq, l.issued = next, l.seq+1, now
	return nil
}

// release renames our held entry, of fence epoch, to free.E. Called with
// l.op held.
func (l *Lock) release(epoch uint64) error {
	free := freeName(epoch)
	if err := move(l.path, l.cur, free); err != nil {
		return err
	}
	l.lastFree = entry{name: free, free: true, epoch: epoch}
	return nil
}
