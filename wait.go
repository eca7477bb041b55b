package dlock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/proc"
	"github.com/lockdir/dlock/internal/watch"
)

// waitSpec is what a waiting acquisition needs: what to watch, and one
// attempt that reports, when it fails, the holder it saw and when that
// holder becomes stale (the zero time if never by itself).
type waitSpec struct {
	what     string // for errors: "locking /x"
	paths    []string
	queue    *lockdir.Queue // for a single lock on a local filesystem, else nil
	local    bool           // the filesystem is local: a watch sees every change
	clock    clock.Clock
	patience time.Duration // < 0: no limit
	poll     time.Duration
	try      func() outcome
	hint     func(name string) // told the names events carry; may be nil
	// tryEvent, if not nil, replaces try for the first in line woken by
	// events: see Lock.tryEvent.
	tryEvent func() outcome
	blocked  func() // test hook; may be nil
	busy     func(seen entry, start time.Time) error
	// The attempt the caller made just before waiting, if it did: a
	// waiter whose first watch is on a predecessor's ticket does not
	// list the lock again (who holds it is for those ahead to watch).
	looked  bool
	seen    entry
	staleAt time.Time
}

// waitBusy is what every acquisition begun at start does once its first
// attempt, o, found the lock at path busy: it answers busy at once for a
// PATIENCE of 0, or else waits (wait) as spec says. spec is made only
// then, and the callers make their first attempt without it, so that an
// acquisition of a free lock pays for nothing more (a closure, a queue,
// the statfs that says whether the filesystem is local). An attempt given
// up when PATIENCE ran out, not ctx, gives an error matching ErrBusy.
func waitBusy(ctx context.Context, cfg config, path string, o outcome, start time.Time, spec func() waitSpec) error {
	w := spec()
	if w.patience == 0 {
		return w.busy(o.seen, start)
	}
	w.looked, w.seen, w.staleAt = o.err == nil, o.seen, o.staleAt
	return cfg.patienceSpent(ctx, path, wait(ctx, w, start))
}

// refusedFor is the error of a wait whose PATIENCE ran out while the
// filesystem refused its attempts (fsys.ErrTransient): not ErrBusy.
func (r *waiter) refusedFor(refused error) error {
	return fmt.Errorf("dlock: %s: the filesystem refused every attempt until PATIENCE %v ran out: %w", r.w.what, r.w.patience, refused)
}

// settled reports whether an attempt's outcome ends an acquisition at
// once: acquired, or an error no waiting mends. A refusal that passes by
// itself (fsys.ErrTransient: on Windows a sharing violation or a
// delete-pending name, another program having the entry open) is waited
// out within PATIENCE, and never taken for a busy lock.
func (o outcome) settled(patience time.Duration) bool {
	return o.ok || o.err != nil && (patience == 0 || !fsys.IsTransient(o.err))
}

// localPollFactor: on a local filesystem that is watched, polling is only
// a safety net: events report every change, timers every staleness, and a
// pidfd (or a pid check) the death of a holder on this host. So it runs
// this many times less often.
const localPollFactor = 30

// wait retries until the attempt succeeds, ctx is done or PATIENCE runs
// out. Between attempts it sleeps until the first of: a watch event
// (local changes), the jittered poll interval (changes by other clients
// of a network filesystem, which no watch sees), the moment the holder
// seen becomes stale, or the PATIENCE deadline. All timers come from the
// given clock.
//
// Each turn of the loop is a small state machine (waiter): choose what to
// watch, watch it, look (or let events or timers tell), schedule the next
// poll, then sleep until the next reason to wake. What one turn tells the
// next is in the waiter's fields, each named for the rule that sets it.
func wait(ctx context.Context, w waitSpec, start time.Time) error {
	r := newWaiter(w, start)
	defer r.stop()
	for {
		paths, afterPred := r.target()
		paths, watching := r.watch(paths)
		if ok, err := r.tryEvents(watching); ok || err != nil {
			return err
		}
		ok, again, skipped, err := r.look(paths, watching, afterPred)
		switch {
		case ok || err != nil:
			return err
		case again:
			continue
		}
		r.schedulePoll(watching, skipped)
		now := r.w.clock.Now()
		if !r.deadline.IsZero() && !now.Before(r.deadline) {
			if r.refused != nil {
				return r.refusedFor(r.refused)
			}
			return r.w.busy(r.seen, start)
		}
		next, checkPid, armIn := r.nextWake(now)
		if next <= 0 {
			// The holder turned stale since it was judged, or the poll is
			// due: attempt now.
			r.timed = true
			continue
		}
		if err := r.sleep(ctx, now.Add(next), checkPid, armIn); err != nil {
			return err
		}
	}
}

// waiter is one waiting acquisition, between the turns of wait's loop.
type waiter struct {
	w        waitSpec
	start    time.Time
	deadline time.Time // PATIENCE's end, or zero
	timer    *clock.Timer
	wt       watch.Sub
	// The holder's death watch (first in line), our predecessor's.
	death, predDeath *proc.DeathWatch
	acquired         bool

	seen        entry
	staleAt     time.Time
	nextAttempt time.Time // when the next full poll is due
	quick       bool      // no attempt this turn (a timer for the pid or pidfd, or events told all)
	first       bool      // first in line (or not queueing)
	armFor      Holder    // the holder whose death watch is due at armAt
	armAt       time.Time
	timed       bool // woken by the timer for an attempt (or starting)
	evented     bool // woken by events, all of them known
	predGone    bool // woken because a watched path went

	// The last attempt's refusal that passes by itself (fsys.ErrTransient).
	refused error
}

func newWaiter(w waitSpec, start time.Time) *waiter {
	r := &waiter{w: w, start: start, timed: true, timer: w.clock.Timer(time.Hour)}
	if w.patience > 0 {
		r.deadline = start.Add(w.patience)
	}
	return r
}

// leave leaves the queue (which wakes the next waiter), unwatches and
// closes the pidfds.
func (r *waiter) leave() {
	if r.w.queue != nil {
		r.w.queue.Leave()
	}
	r.wt.Close()
	r.death.Close()
	r.predDeath.Close()
}

// won is an acquisition: leaving is done in the background, so that Lock
// returns as soon as the lock is held.
func (r *waiter) won() {
	r.acquired = true
	go r.leave()
}

func (r *waiter) stop() {
	r.timer.Stop()
	if !r.acquired {
		r.leave()
	}
}

// target chooses what to watch this turn: PATH, or in the queue our
// predecessor's ticket. Watch first, then look: a change between the
// two is then either seen by the look or delivered as an event.
// afterPred: first in line, if the holder is our predecessor.
func (r *waiter) target() (paths []string, afterPred bool) {
	q := r.w.queue
	if q == nil {
		return r.w.paths, false
	}
	switch {
	case r.first && r.evented && r.wt.Watched():
		// Woken by an event while first in line: a hand-off, most
		// likely. Try at once; the queue is listed again at the next
		// timer (our place in it does not change by itself).
		return []string{q.Lock}, false
	case !r.first && r.predGone && q.Pred != "":
		// Our predecessor left, most likely because it acquired: then
		// we are first, which the attempt checks without listing the
		// queue (with many waiters, the listing is the costly part of a
		// hand-off).
		return []string{q.Lock}, true
	}
	return []string{q.Target(r.w.clock.Now())}, false
}

// watch watches paths (or, if our predecessor left meanwhile, the next
// one's) and works out whether we are first in line.
func (r *waiter) watch(paths []string) ([]string, bool) {
	q := r.w.queue
	r.predGone = false
	watching := r.wt.Set(paths)
	// The predecessor left between the listing and the watch: look
	// again now rather than at the next poll.
	for i := 0; !watching && q != nil && paths[0] != q.Lock && i < 3; i++ {
		paths = []string{q.Target(r.w.clock.Now())}
		watching = r.wt.Set(paths)
	}
	r.first = q == nil || len(paths) == 1 && paths[0] == q.Lock
	if r.predDeath != nil { // (only ever behind others, in a queue)
		if pid, ok := lockdir.TicketPID(q.Pred); r.first || !ok || !r.predDeath.Watches(pid, 0) {
			r.predDeath.Close()
			r.predDeath = nil
		}
	}
	return paths, watching
}

// tryEvents is the first waiter's reaction to events on PATH that named
// the new entry (tryEvent): it may take a free entry, or learn the new
// holder without a look.
func (r *waiter) tryEvents(watching bool) (bool, error) {
	hinted := r.evented && r.first && watching
	r.evented = false
	if r.quick || !hinted || r.w.tryEvent == nil {
		return false, nil
	}
	o := r.w.tryEvent()
	switch {
	case o.ok:
		r.won()
		return true, nil
	case o.err != nil && fsys.IsTransient(o.err):
		return false, nil // the look that follows tries again
	case o.err != nil:
		return false, o.err
	case o.known:
		r.quick = true // no attempt: the events told what it would
		if o.seen.name != "" {
			r.seen, r.staleAt = o.seen, o.staleAt
		}
	}
	return false, nil
}

// look makes an attempt, unless this turn needs none. Behind others,
// PATH is for those ahead to watch: a look could take the lock from them
// as it is handed over. So, there, only a timer (the poll, the safety
// net) looks: not the Lock's own look just made, nor a wake-up to find
// our place in the queue (a predecessor exited). again: start the next
// turn at once; skipped: no look was made.
func (r *waiter) look(paths []string, watching, afterPred bool) (ok, again, skipped bool, err error) {
	w := &r.w
	skipped = !r.quick && !r.first && watching && (w.looked || !r.timed)
	if skipped && w.looked {
		r.seen, r.staleAt = w.seen, w.staleAt
	}
	w.looked, r.timed = false, false
	if skipped || r.quick {
		return false, false, skipped, nil
	}
	o := w.try()
	refused := r.refused
	r.refused = nil
	switch {
	case o.ok:
		r.won()
		return true, false, false, nil
	case o.err != nil && fsys.IsTransient(o.err):
		r.refused = o.err // waited out as a busy lock is, within PATIENCE
		return false, false, false, nil
	case o.err != nil && refused != nil && errors.As(o.err, new(*stuckError)):
		// PATIENCE ran out while fsys was retrying the refusal: say so.
		return false, false, false, r.refusedFor(refused)
	case o.err != nil:
		return false, false, false, o.err
	}
	r.seen, r.staleAt = o.seen, o.staleAt
	if afterPred && !w.queue.PredHolds(knownToken(r.seen.holder)) {
		return false, true, false, nil // it left for another reason: find our place
	}
	if !watching && len(paths) > 0 {
		if _, added := r.wt.Update(paths); added {
			return false, true, false, nil // watchable now (PATH was missing): look once more
		}
	}
	return false, false, false, nil
}

// schedulePoll sets when the next full poll is due, after a turn that
// looked or could have.
func (r *waiter) schedulePoll(watching, skipped bool) {
	if r.quick {
		r.quick = false
		return
	}
	w := &r.w
	poll := w.poll
	// Not the slow poll when no state entry was seen (listings that
	// missed it: no event follows, only a look finds it), nor right
	// behind the first in line: a first waiter stopped (^Z) would hold up
	// the line with the lock free.
	if watching && w.local && r.refused == nil && !(r.seen.holder.Unknown && r.seen.name == "") &&
		!(w.queue != nil && !r.first && w.queue.Second) {
		poll *= localPollFactor
	}
	// A wake-up that did not look may bring the next poll forward, never
	// put it off: woken again and again (by closes of our predecessor's
	// ticket), a waiter would never poll.
	if at := w.clock.Now().Add(poll*3/4 + rand.N(poll/4+1)); !skipped || r.nextAttempt.IsZero() || at.Before(r.nextAttempt) {
		r.nextAttempt = at
	}
}

// nextWake is how long to sleep: until the poll, the seen holder's
// staleness, PATIENCE's end, or (first in line, with a holder on this
// host) the moment to open its death watch or to check its pid.
func (r *waiter) nextWake(now time.Time) (next time.Duration, checkPid bool, armIn time.Duration) {
	next = r.nextAttempt.Sub(now)
	checkPid, armIn = r.armDeath(now, next)
	if checkPid {
		next = r.w.poll
	}
	if armIn >= 0 && armIn < next {
		next = armIn
	}
	if !r.staleAt.IsZero() && r.staleAt.Sub(now) < next {
		next = r.staleAt.Sub(now)
	}
	if !r.deadline.IsZero() && r.deadline.Sub(now) < next {
		next = r.deadline.Sub(now)
	}
	return next, checkPid, armIn
}

// armDeath: first in line, with a holder on this host, learn of its death
// at once (a pidfd on Linux), or else look at its pid at the plain poll
// interval, so that a holder killed without a word is not left for the
// slow poll. A pidfd costs a dozen system calls and a goroutine, which a
// holder about to hand over is not worth: it is opened once the holder
// has been seen for a tenth of the poll interval (and finds a holder that
// died meanwhile at once). armIn is when to open it (-1: not waiting to).
func (r *waiter) armDeath(now time.Time, next time.Duration) (checkPid bool, armIn time.Duration) {
	armIn = -1
	if !r.first || !onThisHost(r.seen.holder) {
		r.death.Close()
		r.death = nil
		return false, armIn
	}
	h := r.seen.holder
	if !r.death.Watches(h.PID, h.pstart) {
		r.death.Close()
		r.death = nil
		if r.armFor.PID != h.PID || r.armFor.pstart != h.pstart || r.armAt.IsZero() {
			r.armFor, r.armAt = h, now.Add(r.w.poll/10)
		}
		if now.Before(r.armAt) {
			armIn = r.armAt.Sub(now)
		} else {
			r.death = proc.WatchDeath(h.PID, h.pstart)
		}
	}
	return r.death == nil && armIn < 0 && r.w.poll < next, armIn
}

// timerFired is a wake-up by the timer. Woken only to open the death
// watch, or to check the holder's pid, the next turn makes no attempt
// unless one is due.
func (r *waiter) timerFired(checkPid bool, armIn time.Duration) {
	now := r.w.clock.Now()
	r.quick = now.Before(r.nextAttempt) && now.Before(r.staleAt) && (r.deadline.IsZero() || now.Before(r.deadline)) &&
		(armIn >= 0 || checkPid && proc.PIDAlive(r.seen.holder.PID))
	r.timed = !r.quick
}

// sleep waits for the next reason to wake: ctx, the timer, a death, or
// watch events; it records which for the next turn.
func (r *waiter) sleep(ctx context.Context, wake time.Time, checkPid bool, armIn time.Duration) error {
	w := &r.w
	if !r.timer.Stop() {
		select {
		case <-r.timer.C:
		default:
		}
	}
	// The timer is set for the time nextWake chose, not for its duration
	// from now: time that passed since (a pause, or a mock clock moved
	// on meanwhile) would put the wake-up off by as much, and the tick
	// of the timer just drained may have been the one that counted. If
	// that time has come, this is the wake-up (a mock clock's timer set
	// for now would wait for the clock to move again).
	d := wake.Sub(w.clock.Now())
	if d <= 0 {
		r.timerFired(checkPid, armIn)
		return nil
	}
	r.timer.Reset(d)
	if w.blocked != nil {
		w.blocked()
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("dlock: %s: gave up after %v waiting for %s: %w",
			w.what, w.clock.Since(r.start).Round(time.Millisecond), r.seen.holder, context.Cause(ctx))
	case <-r.timer.C:
		r.timerFired(checkPid, armIn)
	case <-r.death.Done():
		r.death.MarkDead()
		r.death.Close()
		r.death = nil
	case <-r.predDeath.Done():
		w.queue.Dead = w.queue.Pred
		r.predDeath.Close()
		r.predDeath = nil
	case <-r.wt.Events():
		r.evented, r.predGone = r.wt.Drain(w.hint)
		// Our predecessor's ticket was closed but is still there: its
		// waiter is exiting (see fsys.HoldOpen). kill(pid, 0) passes it
		// until it is reaped, so watch it end.
		if r.evented && !r.predGone && !r.first && r.predDeath == nil {
			if pid, ok := lockdir.TicketPID(w.queue.Pred); ok {
				r.predDeath = proc.WatchDeath(pid, 0)
			}
		}
	}
	return nil
}
