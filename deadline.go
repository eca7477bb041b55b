package dlock

// The holder's side of the lease: the deadline, the heartbeat, and losing
// the lock.
//
// Each acquisition has a deadline on the holder's own clock: when its last
// successful refresh (or the acquiring rename) was issued, plus TIMEOUT,
// minus MARGIN. A waiter reclaims a holder only once it has seen its entry
// unchanged for the holder's TIMEOUT on the waiter's own clock (or once the
// time the holder wrote in it is older than TIMEOUT plus the clock-skew
// bound, see staleAt). The entry it sees was made by a rename issued no
// earlier than the holder's last refresh, so no waiter can reclaim before
// the holder's deadline plus MARGIN, whatever the filesystem does: a rename
// stuck in a hung mount that lands later shows a new entry, which a waiter
// then watches afresh, and one that lands after a reclaim fails (its
// source name is gone).
//
// At the deadline the holder gives up (Lost is closed, Do's context
// cancelled) by a timer of its own, never by the answer of a system call:
// nothing a caller reads (Lost, Fence, Unlock's bookkeeping) waits behind
// the filesystem. l.mu guards that state and is never held across a system
// call; l.op serializes the filesystem operations.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
)

// errDeadline: the acquisition's deadline passed before a release was done.
var errDeadline = errors.New("deadline passed")

// A release pending (l.pending, of fence l.pendingFence) is an Unlock's
// that has not run yet: whoever takes l.op next does it first (settle),
// so that no later attempt or refresh of this Lock comes between an
// Unlock and its release. Its result goes to l.released (buffered, one
// per Lock): Unlock empties it before it asks for a release, and a
// result nobody waited for (an Unlock that returned at the deadline, an
// abandoned acquisition) is in it by the next Unlock, since it was sent
// under l.op before the acquisition that Unlock ends.

// pend asks for the release of the acquisition with the given fence, and stops
// its timers; report says Unlock waits for the result (then l.unlockMu is
// held, so one Unlock at a time uses l.released). Called with l.mu held.
func (l *Lock) pend(fence uint64, report bool) {
	l.held = false
	l.timer.Stop()
	l.expiry.Stop()
	if report {
		if l.released == nil {
			l.released = make(chan error, 1)
		}
		select {
		case <-l.released: // a result nobody waited for
		default:
		}
	}
	l.pending, l.pendingFence, l.pendingReport = true, fence, report
}

// settle does a pending release. Called with l.op held, before anything
// else is done under it.
func (l *Lock) settle() {
	l.mu.Lock()
	pending, fence, report := l.pending, l.pendingFence, l.pendingReport
	l.pending = false
	l.mu.Unlock()
	if pending {
		err := l.release(fence)
		if report {
			select {
			case l.released <- err:
			default: // (never: emptied by pend)
			}
		}
	}
}

// settleNow takes l.op to do a pending release.
func (l *Lock) settleNow() {
	l.op.Lock()
	defer l.op.Unlock()
	l.settle()
}

// offload runs fn in another goroutine: an idle one that ran an earlier
// fn if there is one, else a new one. The call that must be able to
// return while a system call hangs (Unlock's release, an attempt that
// can be given up) hands its system calls over to another goroutine;
// reusing one spares a goroutine's start and the growth of its stack to
// what a transition needs, on every Unlock. A goroutine stuck in fn is
// simply not idle: the next call starts another.
func offload(fn func()) {
	select {
	case idleWorkers <- fn:
	default:
		go work(fn)
	}
}

// idleWorkers hands a function to a goroutine waiting in work.
var idleWorkers = make(chan func())

// workerIdle is how long a goroutine of offload's waits for more work
// before it ends (up to twice that).
const workerIdle = time.Second

// work runs fn, and then what offload hands it, until none comes for
// workerIdle. Its timer is not reset for every fn (a timer operation on
// every Unlock): when it fires, a goroutine that ran something since
// waits one more period.
func work(fn func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for ran := true; ; {
		if fn != nil {
			fn()
			fn, ran = nil, true
		}
		select {
		case fn = <-idleWorkers:
		case <-idle.C:
			if !ran {
				return
			}
			ran = false
			idle.Reset(workerIdle)
		}
	}
}

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
// does). A nil ctx waits for the attempt however long it takes.
func (l *Lock) attemptIn(ctx context.Context, kind int) outcome {
	if ctx == nil || ctx.Done() == nil {
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

// stuckError: Lock gave up while an attempt was waiting for the filesystem.
type stuckError struct {
	path  string
	cause error
}

func (e *stuckError) Error() string {
	return fmt.Sprintf("dlock: locking %s: gave up while an attempt was still waiting for the filesystem (a hung mount?): %v", e.path, e.cause)
}

func (e *stuckError) Unwrap() error { return e.cause }

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

// lostAlready reports whether the acquisition an attempt just made was
// lost before the attempt could report it (its deadline passed, or its
// entry went, in the moments since confirm): then it is released, so that
// no caller is told it holds a lock already lost. Called with l.op held.
func (l *Lock) lostAlready() bool {
	l.mu.Lock()
	lost := l.isLost
	if lost {
		l.pend(l.fence, false)
	}
	l.mu.Unlock()
	if lost {
		l.logWarn("giving up a lock lost while acquiring it", "fence", l.Fence())
		l.settle()
	}
	return lost
}

// acquired records a successful acquisition whose rename was issued at
// issued, and starts the heartbeat and the deadline. Called with l.op held.
func (l *Lock) acquired(fence uint64, token, name string, issued time.Time, how string) {
	l.token, l.cur, l.seq, l.since, l.issued = token, name, 0, issued, issued
	l.seen = false
	l.mu.Lock()
	l.held, l.isLost, l.lostWhy = true, false, ""
	l.lostCh = make(chan struct{})
	l.fence = fence
	l.deadline = issued.Add(l.cfg.timeout - l.cfg.margin)
	if l.timer == nil {
		l.timer = l.cfg.clock.AfterFunc(time.Hour, l.heartbeat)
		l.expiry = l.cfg.clock.AfterFunc(time.Hour, l.expire)
	}
	if now := l.cfg.clock.Now(); now.Sub(issued) < l.cfg.refresh {
		l.timer.Reset(l.cfg.refresh - now.Sub(issued))
		l.expiry.Reset(l.deadline.Sub(now))
	} else {
		// A late acquisition (a pause, or a rename that took long, as
		// one held by an NFS server's grace period): confirm refreshes
		// at once and arms the timers from that refresh. Armed now, the
		// deadline's timer could fire while it refreshes, and give up a
		// lock the refresh is making good.
		l.timer.Stop()
		l.expiry.Stop()
	}
	l.mu.Unlock()
	if l.cfg.logger != nil {
		l.logInfo(how+" lock", "fence", fence)
	}
}

// heartbeat refreshes the held lock; it runs on the refresh timer. A
// refresh that succeeds moves the deadline to when it was issued plus
// TIMEOUT - MARGIN; one that fails is retried, until the deadline gives
// the lock up (expire).
func (l *Lock) heartbeat() {
	if hook := l.testBeat; hook != nil {
		defer hook()
	}
	l.op.Lock()
	defer l.op.Unlock()
	l.settle()
	l.mu.Lock()
	active := l.held && !l.isLost
	l.mu.Unlock()
	if !active {
		return
	}
	issued := l.cfg.clock.Now()
	err := l.refresh(issued)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held || l.isLost {
		// Unlocked or given up meanwhile: Unlock's release acts on the
		// newest name, which refresh recorded.
		return
	}
	now := l.cfg.clock.Now()
	switch {
	case err == nil:
		l.extend(issued)
		l.timer.Reset(max(l.cfg.refresh-now.Sub(issued), 0))
	case errors.Is(err, lockdir.ErrGone):
		l.markLost("it was reclaimed or removed while held")
	default:
		l.logWarn("refresh failed; retrying", "err", err, "deadline in", l.deadline.Sub(now))
		l.timer.Reset(min(l.cfg.refresh, l.cfg.poll))
	}
}

// extend moves the deadline to TIMEOUT - MARGIN after a refresh issued at
// issued that succeeded. Called with l.mu held.
func (l *Lock) extend(issued time.Time) {
	l.deadline = issued.Add(l.cfg.timeout - l.cfg.margin)
	l.expiry.Reset(l.deadline.Sub(l.cfg.clock.Now()))
}

// expire gives the lock up when its deadline has passed; it runs on the
// deadline timer, and waits for no system call.
func (l *Lock) expire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held || l.isLost || l.cfg.clock.Now().Before(l.deadline) {
		return // released, lost already, or refreshed meanwhile
	}
	l.markLost(fmt.Sprintf("no refresh succeeded within TIMEOUT %v - MARGIN %v of the last one issued: the filesystem did not answer, or failed",
		l.cfg.timeout, l.cfg.margin))
}

// markLost closes the Lost channel once. Called with l.mu held.
func (l *Lock) markLost(why string) {
	if l.isLost {
		return
	}
	l.isLost, l.lostWhy = true, why
	close(l.lostCh)
	if l.timer != nil {
		l.timer.Stop()
		l.expiry.Stop()
	}
	l.logWarn("lost lock", "reason", why, "fence", l.fence)
}

// lose is markLost for the acquisition with the given fence, if it is still
// this Lock's latest.
func (l *Lock) lose(fence uint64, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fence == fence {
		l.markLost(why)
	}
}

// lostError describes a loss and, if the filesystem answers soon, who
// holds the lock now.
func (l *Lock) lostError(fence uint64, why string) error {
	return &LostError{Path: l.path, Fence: fence, Why: why, Now: describeSoon(l.path)}
}

// describeWait bounds how long an error message waits to say who holds a
// lock now: a lock lost to a hung mount must be reported without it.
const describeWait = time.Second

// describeSoon says what the lock directory at path shows now, or that the
// filesystem did not answer within describeWait.
func describeSoon(path string) string {
	ch := make(chan string, 1)
	go func() { ch <- describeState(path) }()
	t := time.NewTimer(describeWait)
	defer t.Stop()
	select {
	case s := <-ch:
		return s
	case <-t.C:
		return fmt.Sprintf("who holds it now is unknown: the filesystem did not answer within %v", describeWait)
	}
}

// describeState says what one look at the lock directory shows.
func describeState(path string) string {
	st, err := readState(path)
	switch {
	case err != nil:
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return fmt.Sprintf("the lock directory cannot be read now (%v)", err)
	case st.Missing:
		return "the lock directory is gone"
	case st.Entries == 1 && st.e.free:
		return "it is free now"
	case st.Entries == 1:
		return "it is held by " + st.e.holder.String() + " now"
	case st.Entries == 0:
		return "it shows no state entry now"
	}
	return fmt.Sprintf("it shows %d state entries now", st.Entries)
}
