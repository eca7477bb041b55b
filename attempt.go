package dlock

// One acquisition attempt of a Lock: everything that tries once, from the
// goroutine that makes it (attemptIn) to the listing, the judgement and
// the rename that takes the lock; and, at the end, the rules it judges a
// holder by: when it is stale (staleAt), whether its process is gone
// (holderDead), whether its clock is far off ours (checkSkew). What the
// lock directory allows is lockdir's; what the holder does once it has
// the lock is deadline.go's; when to try again is wait.go's.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/proc"
)

// The kinds of attempt attemptIn runs (a method value would cost an
// allocation on every call).
const (
	byListing = iota // attempt
	byEvent          // tryEvent
)

// attemptIn runs an attempt of the given kind under l.op. With a ctx that
// can end, it returns when ctx ends even if the attempt is stuck in a
// system call: it then goes on in the background, and if it acquires the
// lock, the lock is released at once (and if it had not started, it never
// does). A ctx that cannot end (context.Background) waits for the attempt
// however long it takes, in this goroutine.
func (l *Lock) attemptIn(ctx context.Context, kind int) outcome {
	if ctx.Done() == nil {
		l.op.Lock()
		defer l.op.Unlock()
		return l.opAttempt(kind)
	}
	res := make(chan outcome, 1)
	abandoned := false // guarded by l.mu
	offload(func() {
		l.op.Lock()
		defer l.op.Unlock()
		l.mu.Lock()
		gone := abandoned
		l.mu.Unlock()
		if gone {
			return
		}
		o := l.opAttempt(kind)
		l.mu.Lock()
		if !abandoned {
			res <- o // under l.mu: the caller sees it, or sees it abandoned
			l.mu.Unlock()
			return
		}
		drop := o.ok
		if drop {
			l.pend(l.fence, false)
		}
		l.mu.Unlock()
		if drop {
			l.logWarn("releasing a lock acquired after Lock gave up", "fence", l.Fence())
			l.settle()
		}
	})
	select {
	case o := <-res:
		return o
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case o := <-res:
		return o
	default:
	}
	abandoned = true
	return outcome{err: &stuckError{path: l.path, cause: context.Cause(ctx)}}
}

// opAttempt is an attempt with l.op held: on a filesystem where a lock can
// be safe (checkFS), a pending release first, and after a busy lock,
// whether PATH is on a local filesystem (for the wait).
func (l *Lock) opAttempt(kind int) outcome {
	if err := l.checkFS(); err != nil {
		return outcome{err: err}
	}
	l.settle()
	var o outcome
	if kind == byEvent {
		o = l.tryEvent()
	} else {
		o = l.attempt()
	}
	switch {
	case o.ok && l.lostAlready():
		return outcome{} // given up and released: busy, try again
	case !o.ok && o.err == nil:
		l.checkLocal()
	}
	return o
}

// checkFS refuses a filesystem where no lock can be safe (fsys.Unsafe); a
// safe answer is kept for localRecheck, with whether the filesystem is
// held in memory and how a transition walks PATH there (l.walk).
// Called with l.op held: it may wait for a hung mount, as an attempt
// does.
func (l *Lock) checkFS() error {
	now := l.cfg.clock.Now()
	if !l.fsOKAt.IsZero() && now.Sub(l.fsOKAt) < localRecheck && !now.Before(l.fsOKAt) {
		return nil
	}
	if err := fsys.Unsafe(l.path); err != nil {
		return err
	}
	l.fsOKAt = now
	l.inMemory.Store(fsys.InMemory(filepath.Dir(l.path)))
	l.walk = walkOf(l.path, l.testCaching)
	return nil
}

// vouch records that PATH's filesystem was found safe at at, whether it
// is held in memory, and how a transition walks PATH there (walkOf, asked
// once for all the container's locks), by the check of the container that
// holds l (a Semaphore's or an RWLock's directory, PATH's parent): it
// counts for each of its locks as checkFS's own would, until
// localRecheck. An RWLock
// writer's 33 locks each walked their path and asked statfs twice at
// their first attempt (on sshfs, about 200 round trips for a write
// lock). A Lock that has looked itself, or is looking, is left alone.
func (l *Lock) vouch(at time.Time, inMemory bool, walk fsys.Walk) {
	if !l.op.TryLock() {
		return
	}
	defer l.op.Unlock()
	if l.fsOKAt.IsZero() {
		l.fsOKAt = at
		l.inMemory.Store(inMemory)
		l.walk = walk
	}
}

// walkOf is how a transition walks path (lockdir.Move): by path on a
// local filesystem; on a network one, once, through a descriptor of the
// lock directory, and where the server resolves requests by path
// (sshfs), asking the server for the directory's type as well. A test's
// caching kind (testCaching) stands for the filesystem's: a network one
// is then taken to resolve by path, the way with the most steps.
func walkOf(path string, testCaching *fsys.Caching) fsys.Walk {
	dir := filepath.Dir(path)
	caching := fsys.CachingOf(dir)
	if testCaching != nil {
		caching = *testCaching
	}
	switch {
	case caching == fsys.Coherent:
		return fsys.WalkEach
	case testCaching != nil || fsys.ByPath(path):
		return fsys.WalkOnceAsk
	}
	return fsys.WalkOnce
}

// localRecheck is how long the answer of fsys.CachingOf is kept: a statfs
// on every contended Lock is wasted, but a filesystem can be mounted over
// the lock's directory while a process runs.
const localRecheck = time.Minute

// checkLocal asks again, when due, how PATH's filesystem client caches
// (fsys.CachingOf), and so whether it is local: after an attempt that
// found the lock busy, so that the wait that follows knows. Called with
// l.op held: statfs may hang with the mount.
func (l *Lock) checkLocal() {
	now := l.cfg.clock.Now()
	l.mu.Lock()
	due := l.localAt.IsZero() || now.Sub(l.localAt) >= localRecheck || now.Before(l.localAt)
	l.mu.Unlock()
	if !due {
		return
	}
	l.caching = fsys.CachingOf(filepath.Dir(l.path))
	if l.testCaching != nil {
		l.caching = *l.testCaching
	}
	l.mu.Lock()
	l.localFS, l.localAt = l.caching == fsys.Coherent, now
	l.mu.Unlock()
}

// tryOnce is one attempt at l, for a container that drives several locks:
// it reports when the seen holder goes stale. A ctx that can end can
// abandon an attempt stuck in the filesystem (see attemptIn).
func (l *Lock) tryOnce(ctx context.Context) outcome {
	if err := l.begin(); err != nil {
		return outcome{err: err}
	}
	defer l.end()
	return l.attemptIn(ctx, byListing)
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
		if o, done := l.takeFree(e, token); done {
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
	case st.Entries == 0 && !st.Queue:
		return l.adoptLock(token)
	case st.Entries != 1:
		return l.unknownState(st, now, seenAt)
	case st.e.free:
		return l.takeFree(st.e, token)
	}
	at, why := l.staleAt(now, seenAt, st.e)
	if now.Before(at) {
		return outcome{seen: st.e, staleAt: at}, true
	}
	ok, err := l.take(st.e, token, true)
	if ok {
		l.logWarn("reclaimed lock", "reason", why, "from", st.e.holder.String(), "entry", st.e.name)
	}
	return takeDone(ok, err)
}

// takeDone is the outcome of a take: done unless another process moved the
// entry first.
func takeDone(ok bool, err error) (outcome, bool) {
	return outcome{ok: ok, err: err}, ok || err != nil
}

// createLock creates the lock directory, already held by us (create).
// Called with l.op held.
func (l *Lock) createLock(token string) (outcome, bool) {
	now := l.cfg.clock.Now()
	fence := uint64(now.UnixNano()) // fences never go back, even if PATH was deleted
	name := lockdir.HeldName(fence, token, 0, now, now, l.cfg.timeout)
	created, err := lockdir.Create(l.path, name, token, l.cfg.perm)
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
	// (An empty directory was adopted before it came to this: only
	// listings that missed the entry of a lock in use end here.)
	return outcome{}, false
}

// adoptLock takes an empty lock directory made by hand (adopt), as it is:
// its mode and owner stay those its maker gave it. Called with l.op held.
func (l *Lock) adoptLock(token string) (outcome, bool) {
	now := l.cfg.clock.Now()
	fence := uint64(now.UnixNano()) // fences never go back, even if PATH was emptied
	name := lockdir.HeldName(fence, token, 0, now, now, l.cfg.timeout)
	adopted, err := lockdir.Adopt(l.path, name)
	if adopted {
		l.acquired(fence, token, name, now, "adopted")
		return outcome{ok: l.confirm(now)}, true
	}
	return outcome{err: err}, err != nil
}

// attemptWatched is the attempt of a waiter that has been watching a
// holder's entry, of fence E. The entry can only go by a transition, and a
// name never comes back once gone: while it is there nothing has changed,
// which one look at it tells instead of a listing's dozen or more
// operations at a network filesystem's server, on every poll. Once it is
// gone, the holder most likely released to free.E, which is tried before
// a listing. done is false when a listing must look (or the holder is
// stale: the listing reclaims it). Called with l.op held.
//
// The look must be one the server answers: a client that answers it from
// a cache (NFS's dentries, a FUSE entry timeout, sshfs's caches) keeps
// showing a released entry, and the waiter would hear of the release
// only at TIMEOUT. On NFS the look is made through a fresh open of PATH,
// which revalidates it (fsys.LookFresh: one GETATTR when nothing
// changed). Where even that may be cached (fsys.Caching.MayCache: FUSE
// keeps a name it found for its entry timeout, sshfs for 20 s), the
// waiter first looks for free.E (in the queue, free.E.q and then free.E:
// releasedTo): FUSE clients keep no name they did not find (unless
// mounted with a negative timeout), so the server answers that look
// while the lock is held, and a release is heard within a poll. A
// waiter in a polled queue that finds the holder's entry gone tries the
// free names unlisted only if it is first in line (myTurn); otherwise
// it lists, and deferTo decides. A look that may have been cached still proves that the entry
// existed when it was first seen (a name never comes back), which is all
// that staleAt counts on; it is never taken for the server's word on the
// holder's clock (checkSkew).
func (l *Lock) attemptWatched(now time.Time, token string) (o outcome, done bool) {
	e := l.seenHeld
	if !l.seen || e.name == "" || l.seenName != e.name {
		return outcome{}, false
	}
	frees := l.releasedTo(e.fence)
	if l.caching.MayCache() {
		for _, free := range frees {
			if ok, err := l.lookAt(free.name); ok && err == nil {
				return l.takeFree(free, token)
			}
		}
	}
	if ok, err := l.lookAt(e.name); ok && err == nil {
		seenAt := l.cfg.clock.Now()
		if at, _ := l.staleAt(now, seenAt, e); now.Before(at) {
			return outcome{seen: e, staleAt: at}, true
		}
		return outcome{}, false
	}
	if !l.caching.MayCache() && l.myTurn() {
		return l.takeBlind(frees, token)
	}
	return outcome{}, false
}

// takeBlind tries to take each of frees in turn, unlisted: done is
// false if none was there (list). Called with l.op held.
func (l *Lock) takeBlind(frees []entry, token string) (o outcome, done bool) {
	for _, free := range frees {
		if ok, err := l.take(free, token, false); ok || err != nil {
			return outcome{ok: ok, err: err}, true
		}
	}
	return outcome{}, false
}

// releasedTo is what the holder of fence E may have released to: free.E,
// and, for a waiter in the queue, first free.E.q (a holder that knew of
// us). Called with l.op held.
func (l *Lock) releasedTo(fence uint64) []entry {
	free := entry{name: lockdir.FreeName(fence), free: true, fence: fence}
	l.mu.Lock()
	queued := l.queue != nil
	l.mu.Unlock()
	if !queued {
		return []entry{free}
	}
	return []entry{{name: lockdir.QueuedFreeName(fence), free: true, queued: true, fence: fence}, free}
}

// myTurn reports whether a free lock is this attempt's to take without
// a listing of PATH: not waiting in a queue, first by the watch, or
// first by a listing of a polled queue (the free entry's name is then
// tried blind: a rename of a name that is not there costs what a
// listing would). Called with l.op held.
func (l *Lock) myTurn() bool {
	l.mu.Lock()
	q, first := l.queue, l.queueFirst
	l.mu.Unlock()
	if q == nil || first {
		return true
	}
	isFirst, _ := q.First(l.cfg.clock.Now())
	return isFirst
}

// lookAt reports whether the state entry name is in PATH, by the cheapest
// look PATH's filesystem client asks its server for, where it has one
// (see attemptWatched). Called with l.op held.
func (l *Lock) lookAt(name string) (bool, error) {
	if l.caching.OpenFirst() {
		return fsys.LookFresh(l.path, name)
	}
	return fsys.IsRealDir(l.path + string(os.PathSeparator) + name)
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
	switch err := lockdir.Move(l.path, e.name, name, l.walk); {
	case err == nil:
		if l.testStep != nil {
			l.testStep("taken")
		}
		how := "acquired"
		if reclaim {
			how = "reclaimed"
		}
		l.acquired(fence, token, name, now, how)
		l.noteWaiters(e)
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

// noteWaiters records, for the release, whether the acquisition that
// took e knows of waiters: it took free.E.q, or waited in a polled queue
// (see lockdir's queue.go). A waiter of a watched local queue does not
// count: there the first in line is woken at the release and takes the
// lock at once, and a listing of the queue at every hand-off would cost
// a herd of waiters CPU for nothing. Called with l.op held.
func (l *Lock) noteWaiters(e entry) {
	l.mu.Lock()
	l.knowsWaiters = e.queued || l.queue != nil && l.queue.Polled()
	l.ticket = l.queueTok
	l.mu.Unlock()
}

// freshToken returns the token of a new attempt: random, and while
// waiting in the queue, begun by the queue token. (The other half, 64
// random bits per attempt, keeps every attempt's names new.) Called with
// l.mu held.
func (l *Lock) freshToken() string {
	t := lockdir.NewToken()
	if l.queueTok != "" {
		t = l.queueTok + t[len(l.queueTok):]
	}
	return t
}

// hint takes the name of a new entry from a watch event on PATH, in the
// order of the events: the newest state entry is what tryEvent acts on.
func (l *Lock) hint(name string) {
	if !lockdir.IsStateName(name) {
		return
	}
	e := parseEntry(name)
	l.mu.Lock()
	l.event = e
	l.mu.Unlock()
}

// tryEvent is what the first waiter in line does when woken by events on
// PATH, instead of an attempt that lists PATH: the events named the
// newest entry. A free entry is taken (the same compare-and-swap as any
// attempt). A held one is the new holder, whose staleness is judged as
// if listed: but it is never reclaimed from here, only by an attempt
// that lists. known is false when the events named no entry (then a full
// attempt follows); seen is zero when the free entry was taken by
// another first (its new entry comes with the next event). Called with
// l.op held.
func (l *Lock) tryEvent() outcome {
	l.mu.Lock()
	e := l.event
	l.event = entry{}
	l.mu.Unlock()
	switch {
	case e.name == "" || e.holder.Unknown && !e.free:
		return outcome{}
	case e.free:
		l.mu.Lock()
		token := l.freshToken()
		l.mu.Unlock()
		o, _ := l.takeFree(e, token)
		o.known = true
		return o
	}
	// The event came after the entry was made: it was there when the
	// event was read, which is before now.
	now := l.cfg.clock.Now()
	at, _ := l.staleAt(now, now, e)
	if !now.Before(at) {
		return outcome{} // stale: an attempt reclaims it
	}
	return outcome{seen: e, staleAt: at, known: true}
}

// try is an attempt of a waiting acquisition (Lock.Lock's), which ctx
// can abandon.
func (l *Lock) try(ctx context.Context) outcome { return l.attemptIn(ctx, byListing) }

// tryHint is try for the first waiter in line woken by events that named
// the new entry (see tryEvent).
func (l *Lock) tryHint(ctx context.Context) outcome { return l.attemptIn(ctx, byEvent) }

// waitSpec describes waiting for this Lock. The waiter queues (see
// lockdir's queue.go): on a watched local filesystem it watches only its
// predecessor (lockdir.NewQueue); elsewhere it polls PATH, and its ticket
// keeps its turn (lockdir.NewPolledQueue).
func (l *Lock) waitSpec() waitSpec {
	l.mu.Lock()
	local := !l.cfg.noWatch && l.localFS
	l.mu.Unlock()
	tok := lockdir.NewToken()[:16]
	q := lockdir.NewPolledQueue(l.path, tok, l.cfg.poll, l.cfg.timeout)
	if local {
		q = lockdir.NewQueue(l.path, tok, l.cfg.poll, l.cfg.timeout)
	}
	l.mu.Lock()
	l.queueTok, l.queue = q.Token, q
	l.mu.Unlock()
	return waitSpec{
		what:     "locking " + l.path,
		paths:    watchPaths(l.cfg, l.path),
		queue:    q,
		local:    local,
		clock:    l.cfg.clock,
		patience: l.cfg.patience,
		poll:     l.cfg.poll,
		blocked:  l.testBlocked,
		hints:    l.announce(),
	}
}

// inLine is the wait's word, each turn, on whether it is first in line
// in a watched local queue (its watch is on PATH): then an attempt that
// finds the lock free takes it without listing the queue (deferTo).
func (l *Lock) inLine(first bool) {
	l.mu.Lock()
	l.queueFirst = first
	l.mu.Unlock()
}

// deferTo reports whether an attempt that found the free entry e leaves
// it to the waiters ahead (see lockdir's queue.go), and until when at
// most: the outcome is busy, and the wait attempts again then (zero: a
// newcomer that found free.E.q, whose wait queues first). A Lock call
// defers; TryLock, a PATIENCE of 0 and a container's slot never do. A
// waiter first in line takes it; one behind takes it once it has seen
// this very free entry for the grant window of the first in line, whom
// it then passes over. Called with l.op held.
func (l *Lock) deferTo(e entry) (bool, time.Time) {
	l.mu.Lock()
	q, first, call := l.queue, l.queueFirst, l.call
	l.mu.Unlock()
	switch {
	case call != callLock || first:
		return false, time.Time{}
	case q == nil:
		return e.queued, time.Time{}
	}
	now := l.cfg.clock.Now()
	isFirst, head := q.First(now)
	if isFirst {
		return false, time.Time{}
	}
	if l.freeSeen != e.name || now.Before(l.freeSince) {
		l.freeSeen, l.freeSince = e.name, now
	}
	until := l.freeSince.Add(lockdir.GrantWindow(lockdir.TicketPoll(head)))
	if now.Before(until) {
		return true, until
	}
	q.PassOver(head)
	l.logInfo("passing over the first waiter in line: the lock stayed free for its grant window", "ticket", head)
	return false, time.Time{}
}

// takeFree takes the free entry e, unless the waiters ahead have it
// first (deferTo). done is false when another process moved it first.
// Called with l.op held.
func (l *Lock) takeFree(e entry, token string) (o outcome, done bool) {
	if wait, until := l.deferTo(e); wait {
		return outcome{seen: e, staleAt: until}, true
	}
	return takeDone(l.take(e, token, false))
}

// busyError is the error of Lock.Lock when PATIENCE ran out.
func (l *Lock) busyError(seen entry, start time.Time) error {
	return busyError(l.cfg.clock, l.path, seen, start)
}

// When a holder is stale, as one Lock can tell: how long it has seen the
// same entry, the time the holder wrote, whether the holder's process is
// gone; and telling a holder whose clock is far off ours.

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
	l.observe(seenAt, e)
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

// observe records that a look ended at seenAt showed e: the observation
// of e goes on if it was the entry seen last, or starts now. Called with
// l.op held.
func (l *Lock) observe(seenAt time.Time, e entry) {
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
	// A look that may have been answered from a cache says nothing of
	// when the entry was not there yet (checkSkew's before). (Unknown
	// until the first busy attempt has asked: see checkLocal.)
	l.seenLast = seenAt
	if l.caching.MayCache() {
		l.seenLast = time.Time{}
	}
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
//
// Ahead is proof: no entry is seen before its rename was issued. Behind is
// not, once: a rename that took long to land (a server's grace period, a
// holder paused between reading its clock and renaming) shows an entry
// later than its time too. So behind is told only when the holder's
// entries came late skewRepeat times in a row; and never from a look
// that may have come from a cache (staleAt leaves before zero then).
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
		if l.behindTok != h.Token {
			l.behindTok, l.behindN = h.Token, 0
		}
		if off <= tol {
			l.behindN = 0
			return
		}
		if l.behindN++; l.behindN < skewRepeat {
			return
		}
	}
	l.skewTold = h.Token
	l.logWarn("the holder's clock is far off this host's", "holder", h.String(), "its clock is at least "+off.Round(time.Millisecond).String(), dir+" ours",
		"max clock skew", l.cfg.maxSkew)
}

// skewRepeat is how many of a holder's entries in a row must come later
// than their time says before a waiter tells that its clock is behind.
const skewRepeat = 3

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
