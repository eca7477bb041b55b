package dlock

// One acquisition attempt of a Lock, and the rules it judges a holder by
// (when a holder is stale, whether its process is gone). What it does to
// the lock directory is lockdir's; when it is tried again is wait.go's.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/proc"
)

// outcome is what one attempt found: acquired (ok), or the entry seen and
// when its holder becomes stale, or an error. known is tryEvent's: the
// events told what an attempt would have found. slot is a semaphore's:
// the slot taken, when ok (leaseOf).
type outcome struct {
	ok      bool
	slot    int
	seen    entry
	staleAt time.Time
	known   bool
	err     error
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
		if o, done := took(l.take(e, token, false)); done {
			return o
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
		if err != nil {
			return outcome{err: err}
		}
		if o, done := l.actOn(st, now, seenAt, token); done {
			return o
		}
	}
	// Four listings each raced with another process: report busy; the
	// caller waits and tries again.
	st, err := readState(l.path)
	return outcome{seen: st.e, err: err}
}

// actOn is what an attempt does with one listing, begun at now and
// ended at seenAt. done is false when another process moved first (it
// renamed, created or removed what the listing showed): list again.
// Called with l.op held.
func (l *Lock) actOn(st dirState, now, seenAt time.Time, token string) (o outcome, done bool) {
	switch {
	case st.Missing:
		return l.createLock(token)
	case st.Entries != 1:
		return l.unknownState(st, now, seenAt)
	case st.e.free:
		return took(l.take(st.e, token, false))
	}
	at, why := l.staleAt(now, seenAt, st.e)
	if now.Before(at) {
		return outcome{seen: st.e, staleAt: at}, true
	}
	ok, err := l.take(st.e, token, true)
	if ok {
		l.logWarn("reclaimed lock", "reason", why, "from", st.e.holder.String(), "entry", st.e.name)
	}
	return took(ok, err)
}

// took is the outcome of a take: done unless another process moved the
// entry first.
func took(ok bool, err error) (outcome, bool) {
	return outcome{ok: ok, err: err}, ok || err != nil
}

// createLock creates the lock directory, already held by us (create).
// Called with l.op held.
func (l *Lock) createLock(token string) (outcome, bool) {
	now := l.cfg.clock.Now()
	fence := uint64(now.UnixNano()) // fences never go back, even if PATH was deleted
	name := lockdir.HeldName(fence, token, 0, now, now, l.cfg.timeout)
	perm := l.cfg.perm
	if l.createPerm != 0 {
		perm = l.createPerm
	}
	created, err := lockdir.Create(l.path, name, token, perm)
	if created {
		l.acquired(fence, token, name, now, "created")
		created = l.confirm(now)
		lockdir.SweepStages(l.path, now, l.cfg.timeout, lockdir.StageMember)
		return outcome{ok: created}, true
	}
	return outcome{err: err}, err != nil
}

// unknownState judges a listing without exactly one state entry: an
// empty directory, one left with only the waiters' queue, listings that
// all missed the entry, or that showed it under two names (see
// lockdir.Read). It is an unknown state, judged after TIMEOUT unchanged
// (invariant 4); a waiter looks again at its poll interval. Only an
// empty directory is then removed (and the lock made afresh). Called
// with l.op held.
func (l *Lock) unknownState(st dirState, now, seenAt time.Time) (outcome, bool) {
	e := entry{holder: Holder{Unknown: true, Entry: st.Names}}
	if at, _ := l.staleAt(now, seenAt, e); now.Before(at) {
		e.observed = l.seenSince
		return outcome{seen: e, staleAt: at}, true
	}
	switch {
	case st.Entries > 1:
		return outcome{err: lockdir.ManyEntriesError(l.path, st.Entries, l.cfg.timeout)}, true
	case st.Queue:
		return outcome{err: lockdir.NoEntryError(l.path, l.cfg.timeout)}, true
	}
	l.logWarn("removing empty lock directory", "unchanged for", l.cfg.timeout)
	// Made by hand, perhaps with a mode for several users: the lock made
	// in its place keeps that mode.
	if fi, err := os.Lstat(l.path); err == nil && fi.IsDir() {
		l.createPerm = fi.Mode() & (fs.ModePerm | fs.ModeSetgid)
	}
	if err := lockdir.RemoveEmpty(l.path); err != nil {
		return outcome{err: err}, true
	}
	return outcome{}, false
}

// attemptWatched is the attempt of a waiter that has been watching a
// holder's entry. The entry can only go by a transition, and a name never
// comes back once gone, so if it is still there nothing has changed: one
// lstat on a network filesystem's server instead of a listing's dozen or
// more operations, on every poll. Once it is gone, the holder of fence E
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
	if ok, err := l.take(entry{name: lockdir.FreeName(e.fence), free: true, fence: e.fence}, token, false); ok || err != nil {
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
	fence := e.fence + 1
	if e.holder.Unknown && !e.free {
		fence = max(uint64(now.UnixNano()), 1) // unknown fence: seed afresh
	}
	name := lockdir.HeldName(fence, token, 0, now, now, l.cfg.timeout)
	switch err := lockdir.Move(l.path, e.name, name); {
	case err == nil:
		if l.testStep != nil {
			l.testStep("taken")
		}
		how := "acquired"
		if reclaim {
			how = "reclaimed"
		}
		l.acquired(fence, token, name, now, how)
		return l.confirm(now), nil
	case errors.Is(err, lockdir.ErrGone):
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
	case errors.Is(err, lockdir.ErrGone):
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
//     (deadline.go), whatever the clocks say;
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

// holderDead is provablyDead for the entry e, asked again for the same
// holder process at most once per poll interval: a woken waiter need not
// read /proc (tens of µs) on every event, nor for every new entry of a
// holder it found alive a moment ago. The answer only decides when a
// reclaim is tried (invariant 3).
func (l *Lock) holderDead(now time.Time, e entry) bool {
	k := aliveKey{e.holder.PID, e.holder.pstart, e.holder.HostID}
	if k.host == lockdir.Self().HostID && proc.KnownDead(k.pid, k.pstart) {
		return true
	}
	for _, a := range l.alive {
		if a.key == k && now.Sub(a.at) < l.cfg.poll && !now.Before(a.at) {
			return false
		}
	}
	if provablyDead(e.holder) {
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
	next := lockdir.HeldName(l.Fence(), l.token, l.seq+1, l.since, now, l.cfg.timeout)
	if err := lockdir.Move(l.path, l.cur, next); err != nil {
		return err
	}
	l.cur, l.seq, l.issued = next, l.seq+1, now
	return nil
}

// release renames our held entry, of the given fence E, to free.E. Called with
// l.op held.
//
// A refusal that passes (fsys.ErrTransient: on Windows an antivirus or an
// indexer has the entry open) is tried again, every quarter of a second at
// most, until the deadline (and for TIMEOUT of real time at most): a
// release refused for a moment still releases. Unlock waits for it until
// the deadline, as for any release.
func (l *Lock) release(fence uint64) error {
	free := lockdir.FreeName(fence)
	err := lockdir.Move(l.path, l.cur, free)
	for start := time.Now(); fsys.IsTransient(err) && time.Since(start) < l.cfg.timeout; {
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		if !l.cfg.clock.Now().Before(deadline) {
			break
		}
		time.Sleep(min(l.cfg.poll, 250*time.Millisecond))
		err = lockdir.Move(l.path, l.cur, free)
	}
	if err != nil {
		return err
	}
	l.lastFree = entry{name: free, free: true, fence: fence}
	return nil
}

// onThisHost reports whether h ran on this host, in this pid namespace.
func onThisHost(h Holder) bool {
	id := lockdir.Self()
	return !h.Unknown && id.HostID != "0" && h.HostID == id.HostID
}

// provablyDead reports whether h is provably gone: it ran on this host (same
// boot, same pid namespace) and its process no longer exists, is a zombie,
// or is another process with the same pid.
func provablyDead(h Holder) bool {
	if !onThisHost(h) {
		return false
	}
	start, alive, known := proc.ProcessStart(h.PID)
	if !known {
		return false
	}
	if !alive {
		return true
	}
	return start != 0 && h.pstart != 0 && start != h.pstart
}

// entry is a state entry as an attempt saw it: lockdir's parsed entry,
// with the holder as the API gives it.
type entry struct {
	name   string
	free   bool
	fence  uint64 // for free and held entries that parsed
	holder Holder // for held entries (Unknown if it did not parse)
	// For an unknown state an attempt returns: since when it was seen.
	observed time.Time
}

// fromDir is the entry lockdir parsed.
func fromDir(e lockdir.Entry) entry {
	return entry{name: e.Name, free: e.Free, fence: e.Fence, holder: holderOf(e.Holder)}
}

// parseEntry parses a state entry name (lockdir.Parse).
func parseEntry(name string) entry { return fromDir(lockdir.Parse(name)) }

// holderOf is the Holder of a parsed owner record.
func holderOf(h lockdir.Holder) Holder {
	return Holder{PID: h.PID, Host: h.Host, HostID: h.HostID, Since: h.Since, Beat: h.Beat, Timeout: h.Timeout,
		Fence: h.Fence, Token: h.Token, Entry: h.Entry, Unknown: h.Unknown, Sequence: h.Sequence, pstart: h.PStart}
}

// dirState is one listing of a lock directory (lockdir.Read), with its
// state entry as an attempt sees it.
type dirState struct {
	lockdir.State
	e entry // the state entry, when Entries == 1
}

// readState lists the lock directory at path (lockdir.Read), and refuses
// a directory no waiting can make a lock (State.Check).
func readState(path string) (dirState, error) {
	st, err := lockdir.Read(path)
	if err == nil {
		err = st.Check(path)
	}
	return dirState{st, fromDir(st.E)}, err
}

// knownToken is h's acquisition token, "" for an unknown holder.
func knownToken(h Holder) string {
	if h.Unknown {
		return ""
	}
	return h.Token
}

// tryOnce is one attempt at l, for a container that drives several locks:
// it reports when the seen holder goes stale. ctx, if not nil, can abandon
// an attempt stuck in the filesystem (see attemptIn).
func (l *Lock) tryOnce(ctx context.Context) outcome {
	if err := l.begin(); err != nil {
		return outcome{err: err}
	}
	defer l.end()
	return l.attemptIn(ctx, byListing)
}
