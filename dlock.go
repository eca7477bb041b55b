package dlock

import (
	"context"
	"errors"
	"fmt"
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

	// mu guards what Lost, Fence and Unlock read, and what an acquisition
	// shares with its attempts. It is never held across a system call,
	// so they answer at once whatever the filesystem is doing.
	mu sync.Mutex
	leaseState
	callState

	// op serializes this Lock's filesystem operations (attempts,
	// refreshes, releases, Break) and guards what only they use. A system
	// call stuck in a hung mount holds it; nothing that must answer at
	// once waits for it.
	op sync.Mutex
	heldEntry
	observation

	// Where an Unlock's release reports (see settle); the timer bounds
	// Unlock's wait for it.
	unlockMu    sync.Mutex // held by an Unlock: it owns released and unlockTimer
	released    chan error
	unlockTimer *clock.Timer
	// inMemory: PATH's filesystem is held in memory (fsys.InMemory), so
	// Unlock renames in its own goroutine (see releaseInline). Set with
	// fsOKAt, read by Unlock without l.op.
	inMemory atomic.Bool
	// hintSend sends wake-up hints after releases (hints.go).
	hintSend hintSender

	// Test hooks: called when a waiter is about to block, after each
	// heartbeat, and at steps of an attempt ("look": the clock is read,
	// the lock not yet listed; "taken": an acquiring rename just done),
	// where a test plays a paused process.
	testBlocked func()
	testBeat    func()
	testStep    func(step string)
	testCaching *fsys.Caching // how PATH's client caches, as checkLocal and checkFS find it
}

// leaseState is the holder's side of an acquisition (deadline.go), as
// Lost, Fence and Unlock read it: guarded by Lock.mu.
type leaseState struct {
	held     bool // acquired and not yet unlocked (possibly lost)
	isLost   bool
	lostWhy  string
	lostCh   chan struct{}
	fence    uint64    // fence of the current or last acquisition
	deadline time.Time // the acquisition's: last refresh issued + TIMEOUT - MARGIN
	expiry   *clock.Timer
	timer    *clock.Timer // the heartbeat
	// An Unlock's release not done yet (see settle).
	pending       bool
	pendingFence  uint64
	pendingReport bool
}

// callState is what a Lock or TryLock call under way shares with its
// attempts, which may run in another goroutine (attemptIn), and with the
// watch's events: guarded by Lock.mu.
type callState struct {
	busy  bool  // a Lock or TryLock call is under way
	event entry // the newest state entry a watch event named, for tryEvent
	// While Lock waits in PATH's queue: the first half of the tokens of
	// its attempts, as on its ticket, so that its successor can tell
	// that it acquired (lockdir.Queue.PredHolds).
	queueTok string
	// The queue itself (nil when not waiting), and whether the wait's
	// watch says we are first in line (a local queue's waiter watching
	// PATH): an attempt that finds the lock free asks them whether to
	// take it (deferTo).
	queue      *lockdir.Queue
	queueFirst bool
	// The call under way: callLock (Lock, which queues), callTry (one
	// attempt: TryLock, or Lock with a PATIENCE of 0), or 0 (Break, a
	// container's slot).
	call int
	// Whether PATH is on a local filesystem, and when that was asked
	// (see caching).
	localFS bool
	localAt time.Time
}

// heldEntry is this Lock's state entry as its transitions left it:
// guarded by Lock.op.
type heldEntry struct {
	token    string
	cur      string // our held entry's current name
	seq      uint64
	since    time.Time
	issued   time.Time // when the last successful refresh (or the acquiring rename) was issued
	lastFree entry     // the free entry we released last: tried first
	// Whether this holding knows of waiters (took free.E.q, or waited in
	// a polled queue, under ticket token ticket): its release then lists the
	// queue (release). plain: acquired by Lock or TryLock (not a
	// container's slot), whose release lists the queue after a hold of a
	// poll interval or more too.
	knowsWaiters bool
	plain        bool
	ticket       string
}

// observation is what this Lock's attempts have found out about PATH and
// its holders (attempt.go): guarded by Lock.op.
type observation struct {
	fsOKAt time.Time // when fsys.Unsafe last found PATH's filesystem safe
	// walk is how a transition walks PATH (lockdir.Move), by what its
	// filesystem is (fsys.CachingOf, fsys.ByPath): asked with fsOKAt.
	walk fsys.Walk
	// caching is how PATH's filesystem client may answer a look, asked
	// with localFS: what a waiter's look between listings must be for
	// the server to answer it (attemptWatched).
	caching fsys.Caching
	// The entry (or picture of the directory) this Lock has been seeing
	// since seenSince, last at seenLast (see staleAt).
	seen      bool
	seenName  string
	seenSince time.Time
	seenLast  time.Time
	seenHeld  entry // the entry seen, when it is a holder's that parsed
	// The free entry a waiter not first in line has been deferring to
	// the first for, since when (deferTo).
	freeSeen  string
	freeSince time.Time
	skewTold  string // the token whose clock offset was logged
	behindTok string // the holder whose entries came late, behindN times in a row
	behindN   int
	// Holder processes last found alive, and when (holderDead).
	alive [8]aliveAt
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
	return &Lock{path: abs, cfg: cfg, leaseState: leaseState{lostCh: make(chan struct{})}, observation: observation{caching: fsys.Unknown}}, nil
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
	if err := l.begin(); err != nil {
		return err
	}
	defer l.end()
	l.setCall(callLock)
	if l.cfg.patience == 0 {
		l.setCall(callTry)
	}
	_, err := acquire(ctx, l, acquisition{"locking", l.path, &l.cfg, l.cfg.clock.Now()})
	return err
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
	l.setCall(callTry)
	o := tryNow(l)
	return o.ok, o.err
}

// The calls an attempt may be part of (callState.call).
const (
	callLock = 1 + iota // Lock: a newcomer queues behind waiters (deferTo)
	callTry             // TryLock, or Lock with a PATIENCE of 0: one attempt
)

func (l *Lock) setCall(c int) {
	l.mu.Lock()
	l.call = c
	l.mu.Unlock()
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
	l.busy, l.queueTok, l.queue, l.queueFirst, l.call = false, "", nil, false, 0
	l.mu.Unlock()
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
