package dlock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

// Lock is a lock directory at one path, as seen by one holder. Make one
// with New (or Named): a zero Lock cannot lock.
//
// A Lock is safe for concurrent use: any goroutine may Unlock it. It is not
// reentrant: Lock on a Lock that holds (or is acquiring) returns ErrHeld at
// once. Two Lock values on one path exclude each other, in one process or
// many. Unlike sync.Mutex, a Lock can fail to lock (see Lock) and can be
// lost while held (see Lost).
type Lock struct {
	path string
	cfg  config

	// mu guards what Lost, Fence and Unlock read: the holder's state and
	// its deadline. It is never held across a system call, so they answer
	// at once whatever the filesystem is doing.
	mu       sync.Mutex
	busy     bool // a Lock or TryLock call is under way
	held     bool // acquired and not yet unlocked (possibly lost)
	isLost   bool
	lostWhy  string
	lostCh   chan struct{}
	fence    uint64    // fence of the current or last acquisition
	deadline time.Time // the acquisition's: last refresh issued + TIMEOUT - MARGIN
	expiry   *clock.Timer
	timer    *clock.Timer // the heartbeat
	// An Unlock's release not done yet, and where its result goes (see
	// settle); the timer bounds Unlock's wait for it.
	pending       bool
	pendingFence  uint64
	pendingReport bool
	released      chan error
	unlockMu      sync.Mutex // held by an Unlock: it owns released and unlockTimer
	unlockTimer   *clock.Timer
	event         entry // the newest state entry a watch event named, for tryEvent
	// While Lock waits in PATH's queue: the first half of the tokens of
	// its attempts, as on its ticket, so that its successor can tell
	// that it acquired (lockdir.Queue.PredHolds).
	queueTok string
	// Whether PATH is on a local filesystem, and when that was asked.
	localFS bool
	localAt time.Time

	// op serializes this Lock's filesystem operations (attempts,
	// refreshes, releases, Break) and guards what only they use. A system
	// call stuck in a hung mount holds it; nothing that must answer at
	// once waits for it.
	op     sync.Mutex
	token  string
	cur    string // our held entry's current name
	seq    uint64
	since  time.Time
	issued time.Time // when the last successful refresh (or the acquiring rename) was issued
	fsOKAt time.Time // when fsys.Unsafe last found PATH's filesystem safe
	// inMemory: PATH's filesystem is held in memory (fsys.InMemory), so
	// Unlock renames in its own goroutine (see releaseInline). Set with
	// fsOKAt, read by Unlock without l.op.
	inMemory atomic.Bool
	// The mode of an empty lock directory made by hand that this Lock
	// removed: the one it creates in its place keeps it.
	createPerm fs.FileMode

	lastFree entry // the free entry we released last: tried first
	// The entry (or picture of the directory) this Lock has been seeing
	// since seenSince, last at seenLast (see staleAt).
	seen      bool
	seenName  string
	seenSince time.Time
	seenLast  time.Time
	seenHeld  entry  // the entry seen, when it is a holder's that parsed
	skewTold  string // the token whose clock offset was logged
	// Holder processes last found alive, and when.
	alive [8]aliveAt

	// Test hooks: called when a waiter is about to block, after each
	// heartbeat, and at steps of an attempt ("look": the clock is read,
	// the lock not yet listed; "taken": an acquiring rename just done),
	// where a test plays a paused process.
	testBlocked func()
	testBeat    func()
	testStep    func(step string)
}

// New returns a Lock for the lock directory at path, which need not exist:
// the first Lock creates it (its parent must exist). New does no I/O.
// A relative path is made absolute now, so later chdirs do not move it.
// Options that configure something else (WithDir, WithMaxReaders) are an
// error here.
func New(path string, opts ...Option) (*Lock, error) {
	cfg, err := newConfig("lock", path, opts, 0)
	if err != nil {
		return nil, err
	}
	return newLock(path, cfg)
}

// newLock is New with the options applied and checked.
func newLock(path string, cfg config) (*Lock, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("dlock: lock path %s: %w", path, err)
	}
	return &Lock{path: abs, cfg: cfg, lostCh: make(chan struct{})}, nil
}

// errZero is the error of a lock value made without its constructor.
func errZero(kind, constructor string) error {
	return fmt.Errorf("dlock: a zero %s cannot lock: make it with dlock.%s", kind, constructor)
}

// Path returns the lock directory's absolute path.
func (l *Lock) Path() string { return l.path }

// Lock acquires the lock. It returns nil once acquired; an error matching
// ErrBusy when PATIENCE ran out (a *BusyError naming the holder, unless an
// attempt was still waiting for the filesystem then); an error
// matching ctx.Err() when ctx is done first. Errors that waiting cannot fix
// are returned at once: permission denied, a missing parent directory, a
// read-only filesystem, no space, ErrNotLock (a file, a symlink or another
// directory at the path), ErrCorrupt, and ErrHeld.
//
// Lock returns soon after ctx is done (or PATIENCE runs out) even when an
// attempt is stuck in a filesystem that does not answer (a hung mount):
// the attempt goes on in the background, and a lock it acquires then is
// released at once.
func (l *Lock) Lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dlock: locking %s: %w", l.path, err)
	}
	if err := l.begin(); err != nil {
		return err
	}
	defer l.end()
	start := l.cfg.clock.Now()
	actx, cancel := l.cfg.attemptContext(ctx, start)
	defer cancel()
	o := l.attemptIn(actx, byListing)
	switch {
	case o.settled(l.cfg.patience):
		return l.cfg.patienceSpent(ctx, l.path, o.err)
	case l.cfg.patience == 0:
		return l.busyError(o.seen, start) // (no queue, no statfs for a single try)
	}
	return waitBusy(ctx, l.cfg, l.path, o, start, func() waitSpec { return l.waitSpec(actx) })
}

// waitSpec describes waiting for this Lock, each attempt bounded by ctx:
// on a local filesystem the waiter queues and watches only its
// predecessor (lockdir.Queue).
func (l *Lock) waitSpec(ctx context.Context) waitSpec {
	l.mu.Lock()
	local := !l.cfg.noWatch && l.localFS
	l.mu.Unlock()
	var q *lockdir.Queue
	if local {
		q = lockdir.NewQueue(l.path, lockdir.NewToken()[:16], l.cfg.timeout)
		l.mu.Lock()
		l.queueTok = q.Token
		l.mu.Unlock()
	}
	return waitSpec{
		what:     "locking " + l.path,
		paths:    watchPaths(l.cfg, l.path),
		queue:    q,
		local:    local,
		clock:    l.cfg.clock,
		patience: l.cfg.patience,
		poll:     l.cfg.poll,
		blocked:  l.testBlocked,
		busy:     l.busyError,
		hint:     l.hint,
		try:      func() outcome { return l.attemptIn(ctx, byListing) },
		tryEvent: func() outcome { return l.attemptIn(ctx, byEvent) },
	}
}

// localRecheck is how long the answer of fsys.IsLocal is kept: a statfs on
// every contended Lock is wasted, but a filesystem can be mounted over the
// lock's directory while a process runs.
const localRecheck = time.Minute

// checkLocal asks again, when due, whether PATH is on a local filesystem
// (see fsys.IsLocal): after an attempt that found the lock busy, so that the
// wait that follows knows. Called with l.op held: statfs may hang with
// the mount.
func (l *Lock) checkLocal() {
	now := l.cfg.clock.Now()
	l.mu.Lock()
	due := l.localAt.IsZero() || now.Sub(l.localAt) >= localRecheck || now.Before(l.localAt)
	l.mu.Unlock()
	if !due || l.cfg.noWatch {
		return
	}
	local := fsys.IsLocal(filepath.Dir(l.path))
	l.mu.Lock()
	l.localFS, l.localAt = local, now
	l.mu.Unlock()
}

// watchPaths is paths, or none when watching is off.
func watchPaths(cfg config, paths ...string) []string {
	if cfg.noWatch {
		return nil
	}
	return paths
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
		ok, err := l.take(e, token, false)
		return outcome{ok: ok, known: true, err: err}
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

// TryLock makes one attempt to acquire the lock, reclaiming it if it is
// stale. It returns (false, nil) when another holder has it, and an error
// for anything waiting would not fix (see Lock). TryLock waits for the
// filesystem however long it takes: to bound one attempt on a mount that
// may hang, use Lock with a context and WithPatience(0).
func (l *Lock) TryLock() (bool, error) {
	if err := l.begin(); err != nil {
		return false, err
	}
	defer l.end()
	o := l.attemptIn(nil, byListing)
	return o.ok, o.err
}

// Unlock releases the lock. It returns ErrNotHeld if this Lock does not
// hold it, and ErrLost if it was lost while held (reclaimed by another
// holder, or removed, or its deadline passed): then Unlock leaves the
// current holder's lock alone.
//
// Unlock returns by the acquisition's deadline at the latest, even if the
// filesystem does not answer: a release still under way then finishes in
// the background, and can only free this Lock's own entry (a successor's
// has another name).
func (l *Lock) Unlock() error {
	l.unlockMu.Lock()
	defer l.unlockMu.Unlock()
	l.mu.Lock()
	if !l.held {
		l.mu.Unlock()
		return fmt.Errorf("dlock: unlocking %s: %w", l.path, ErrNotHeld)
	}
	l.pend(l.fence, true)
	lost, why, fence, deadline := l.isLost, l.lostWhy, l.fence, l.deadline
	l.mu.Unlock()
	// The release runs in another goroutine, and this one waits for it
	// until the deadline: a rename stuck in a hung mount cannot be given
	// up by the goroutine making it, and Unlock must return by the
	// deadline. That hand-over is most of what Unlock costs beyond its
	// two system calls (a thread woken now and then); offload reuses an
	// idle goroutine, which at least spares starting one and growing its
	// stack on every Unlock. Where no rename can hang (tmpfs), Unlock
	// makes it itself: its result is then in l.released when settleNow
	// returns.
	inline := l.releaseInline()
	if inline {
		l.settleNow()
	} else {
		offload(l.settleNow)
	}
	if lost {
		// Its entry may still be ours (a loss by the deadline): the release
		// above frees it then, and otherwise fails harmlessly.
		return l.lostError(fence, why)
	}
	wait := deadline.Sub(l.cfg.clock.Now())
	if wait <= 0 {
		return l.lateUnlock(fence)
	}
	var err error
	if inline {
		err = <-l.released
	} else {
		err = l.awaitRelease(wait)
	}
	switch {
	case err == nil:
		if l.cfg.logger != nil {
			l.logInfo("released lock", "fence", fence)
		}
		return nil
	case errors.Is(err, lockdir.ErrGone):
		why = "it was reclaimed or removed while held"
	case err == errDeadline:
		why = fmt.Sprintf("it could not be released before its deadline, TIMEOUT %v - MARGIN %v after its last refresh: the filesystem did not answer", l.cfg.timeout, l.cfg.margin)
	default:
		l.lose(fence, "it could not be released")
		return fmt.Errorf("dlock: releasing lock %s: %w (it becomes stale after TIMEOUT %v)", l.path, err, l.cfg.timeout)
	}
	l.lose(fence, why)
	return l.lostError(fence, why)
}

// awaitRelease waits up to wait for the release Unlock asked for:
// errDeadline if it did not come. Called with l.unlockMu held.
func (l *Lock) awaitRelease(wait time.Duration) error {
	if l.unlockTimer == nil {
		l.unlockTimer = l.cfg.clock.Timer(wait)
	} else {
		l.unlockTimer.Reset(wait)
	}
	defer func() {
		if !l.unlockTimer.Stop() {
			select {
			case <-l.unlockTimer.C:
			default:
			}
		}
	}()
	select {
	case err := <-l.released:
		return err
	case <-l.unlockTimer.C:
		return errDeadline
	}
}

// lateUnlock is Unlock once the deadline has passed (the process was
// paused, or its timers late): the lock counts as lost whatever the
// release finds, which says only whether another took it meanwhile.
func (l *Lock) lateUnlock(fence uint64) error {
	why := fmt.Sprintf("its deadline, TIMEOUT %v - MARGIN %v after its last refresh, passed before Unlock", l.cfg.timeout, l.cfg.margin)
	t := time.NewTimer(describeWait)
	defer t.Stop()
	select {
	case err := <-l.released:
		switch {
		case err == nil:
			why += ", and nobody had taken it (it is released)"
		case errors.Is(err, lockdir.ErrGone):
			why += ", and it was reclaimed or removed"
		default:
			why += fmt.Sprintf(", and releasing it failed (%v)", err)
		}
	case <-t.C:
		why += fmt.Sprintf(", and the filesystem did not answer its release within %v", describeWait)
	}
	l.lose(fence, why)
	return l.lostError(fence, why)
}

// Do acquires the lock, runs fn and releases the lock. fn's context is
// cancelled, with cause ErrLost, if the lock is lost while fn runs, at the
// acquisition's deadline at the latest (see WithMargin). Do returns the
// error from Lock, or fn's error joined with Unlock's.
func (l *Lock) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return Do(ctx, l, fn)
}

// Lost returns a channel that is closed when the lock, while held by this
// Lock, is found reclaimed by another holder or removed (at a heartbeat
// or at Unlock), or when its deadline passes with no refresh done: TIMEOUT
// - MARGIN after the last refresh was issued, whatever the filesystem is
// doing (see WithMargin). Each acquisition has its own channel: call Lost
// after Lock returns. Lost never waits for the filesystem.
func (l *Lock) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lostCh
}

// Fence returns the fencing token of this Lock's current or last
// acquisition (0 before the first). Every acquisition of the path, by any
// holder, gets a larger fence than the one before, so a resource that
// remembers the largest fence it has seen can refuse a late holder's work.
// Fences start from the creation time of the lock directory in
// nanoseconds, so they keep rising even if the directory is deleted and
// created anew (as long as clocks do not go back). Fence never waits for
// the filesystem.
func (l *Lock) Fence() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fence
}

func (l *Lock) begin() error {
	if l.cfg.clock == nil {
		return errZero("Lock", "New")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.held:
		return fmt.Errorf("dlock: locking %s: %w (call Unlock first)", l.path, ErrHeld)
	case l.busy:
		return fmt.Errorf("dlock: locking %s: %w (another goroutine is acquiring it)", l.path, ErrHeld)
	}
	l.busy = true
	return nil
}

func (l *Lock) end() {
	l.mu.Lock()
	l.busy, l.queueTok = false, ""
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

// checkFS refuses a filesystem where no lock can be safe (fsys.Unsafe); a
// safe answer is kept for localRecheck. Called with l.op held: it may
// wait for a hung mount, as an attempt does.
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
	return nil
}

// releaseInline reports whether Unlock may make its release rename
// itself rather than hand it to another goroutine and wait for it until
// the deadline: on a filesystem held in memory, where a rename cannot
// hang. The hand-over is most of what an uncontended Unlock costs beyond
// its system calls (a goroutine readied, now and then an idle thread
// woken: about 8 µs on a 2-core VM, where the calls cost 7). A test that
// plays a hung mount (lockdir.TestMove) makes even tmpfs hang, so it
// gets the hand-over.
func (l *Lock) releaseInline() bool {
	return l.inMemory.Load() && lockdir.TestMove.Load() == nil
}

func (l *Lock) busyError(seen entry, start time.Time) error {
	now := l.cfg.clock.Now()
	e := &BusyError{Path: l.path, Holder: seen.holder, Waited: now.Sub(start)}
	switch {
	case !seen.holder.Unknown:
		e.Age = now.Sub(seen.holder.Beat)
	case !seen.observed.IsZero():
		e.Age = now.Sub(seen.observed)
	}
	return e
}

func (l *Lock) logInfo(msg string, args ...any) {
	if l.cfg.logger != nil {
		l.cfg.logger.Info("dlock: "+msg, append([]any{"path", l.path}, args...)...)
	}
}

func (l *Lock) logWarn(msg string, args ...any) {
	if l.cfg.logger != nil {
		l.cfg.logger.Warn("dlock: "+msg, append([]any{"path", l.path}, args...)...)
	}
}
