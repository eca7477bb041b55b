package dlock

// What every acquisition does (acquire): one attempt, and if the lock is
// busy, the wait (wait), a state machine whose turns begin with why the
// waiter woke. What one attempt does is attempt.go's, and a Semaphore's
// or an RWLock's own; what lockdir's queue decides is queue.go's.

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

// What an acquisition acquires: a Lock, a Semaphore (any free slot), an
// RWLock's reading (a reader slot) or writing (every slot). Acquiring any
// of them is the same (acquire): one attempt, and if the target is busy,
// waiting (wait), whose attempts are the target's too.
type acquirable interface {
	// try makes one attempt, which ctx can abandon (see Lock.attemptIn):
	// acquired, or the holder seen and when it becomes stale.
	try(ctx context.Context) outcome
	// waitSpec is what waiting for the target watches. It is made only
	// once the first attempt found the target busy, so that acquiring a
	// free one pays for nothing more (a queue, the statfs that says
	// whether the filesystem is local).
	waitSpec() waitSpec
	// busyError is the error when PATIENCE runs out on an acquisition
	// begun at start, which last saw the holder seen.
	busyError(seen entry, start time.Time) error
}

// hinted is an acquirable that learns from the names watch events carry (a
// Lock): the first waiter in line, woken by events, tries what they named
// (tryHint) instead of listing.
type hinted interface {
	acquirable
	hint(name string)
	tryHint(ctx context.Context) outcome
}

// lined is an acquirable whose attempts take a free lock only in their
// turn (a Lock, see deferTo): the wait tells it each turn whether its
// watch says it is first in line.
type lined interface {
	inLine(first bool)
}

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

// acquisition is one call that acquires a target (Lock.Lock,
// Semaphore.Take, RWLock.RLock and RWLock.Lock), begun at start:
// PATIENCE counts from then.
type acquisition struct {
	verb  string // for errors: "locking", "acquiring semaphore"
	path  string
	cfg   *config
	start time.Time
}

// acquire is every acquisition: one attempt, and if the target is busy,
// an error matching ErrBusy at once for a PATIENCE of 0, or else waiting
// (wait) until an attempt acquires, ctx is done or PATIENCE runs out. Each
// attempt is bounded by ctx and PATIENCE (attemptContext); one given up
// when PATIENCE ran out, not ctx, gives an error matching ErrBusy. An
// attempt refused for now (fsys.ErrTransient) is waited out like a busy
// target (settled); if PATIENCE runs out so, the error is the refusal's.
// The outcome is the attempt's that acquired.
func acquire(ctx context.Context, t acquirable, a acquisition) (outcome, error) {
	if err := ctx.Err(); err != nil {
		return outcome{}, fmt.Errorf("dlock: %s %s: %w", a.verb, a.path, err)
	}
	actx, cancel := a.cfg.attemptContext(ctx, a.start)
	defer cancel()
	o := t.try(actx)
	switch {
	case o.settled(a.cfg.patience):
		return o, a.cfg.patienceSpent(ctx, a.path, o.err)
	case a.cfg.patience == 0:
		return o, t.busyError(o.seen, a.start) // (no queue, no statfs for a single try)
	}
	o, err := wait(ctx, newWaiter(actx, t, o, a.start))
	return o, a.cfg.patienceSpent(ctx, a.path, err)
}

// settled reports whether an attempt's outcome ends an acquisition at
// once: acquired, or an error no waiting mends. A refusal that passes by
// itself (fsys.ErrTransient: on Windows a sharing violation or a
// delete-pending name, another program having the entry open) is waited
// out within PATIENCE, and never taken for a busy lock.
func (o outcome) settled(patience time.Duration) bool {
	return o.ok || o.err != nil && (patience == 0 || !fsys.IsTransient(o.err))
}

// tryNow is the one attempt of TryLock, TryTake and TryRLock: no context
// or PATIENCE limits it, so it waits for the filesystem however long it
// takes.
func tryNow(t acquirable) outcome { return t.try(context.Background()) }

// attemptContext is what bounds each attempt of a wait begun at start:
// ctx, and PATIENCE. The slack lets the last attempt at PATIENCE finish
// normally; it only ends an attempt stuck in the filesystem.
func (c config) attemptContext(ctx context.Context, start time.Time) (context.Context, context.CancelFunc) {
	if c.patience <= 0 {
		return ctx, func() {}
	}
	slack := min(c.poll, 100*time.Millisecond)
	return c.clock.WithDeadline(ctx, start.Add(c.patience+slack))
}

// patienceSpent turns an attempt on path that was given up when PATIENCE
// ran out (not ctx) into an error matching ErrBusy.
func (c config) patienceSpent(ctx context.Context, path string, err error) error {
	if err == nil {
		return nil
	}
	var stuck *stuckError
	if errors.As(err, &stuck) && ctx.Err() == nil {
		return fmt.Errorf("dlock: %s: PATIENCE %v ran out while an attempt was still waiting for the filesystem (a hung mount, or a machine too loaded to run it in time?): %w",
			path, c.patience, ErrBusy)
	}
	return err
}

// busyError is the BusyError of an acquisition of the lock at path begun
// at start, which last saw the holder seen.
func busyError(c clock.Clock, path string, seen entry, start time.Time) *BusyError {
	now := c.Now()
	e := &BusyError{Path: path, Holder: seen.holder, Waited: now.Sub(start)}
	switch {
	case !seen.holder.Unknown:
		e.Age = now.Sub(seen.holder.Beat)
	case !seen.observed.IsZero():
		e.Age = now.Sub(seen.observed)
	}
	return e
}

// waitSpec is what waiting for a target watches, and how often it polls.
type waitSpec struct {
	what     string // for errors: "locking /x"
	paths    []string
	queue    *lockdir.Queue // for a single lock (polled unless local), else nil
	local    bool           // the filesystem is local: a watch sees every change
	clock    clock.Clock
	patience time.Duration // < 0: no limit
	poll     time.Duration
	blocked  func()     // test hook; may be nil
	hints    *wakeHints // datagrams from releasers (WithWakeHints); may be nil
}

// watchPaths is paths, or none when watching is off.
func watchPaths(cfg config, paths ...string) []string {
	if cfg.noWatch {
		return nil
	}
	return paths
}

// localPollFactor: on a local filesystem that is watched, polling is only
// a safety net: events report every change, timers every staleness, and a
// pidfd (or a pid check) the death of a holder on this host. So it runs
// this many times less often.
const localPollFactor = 30

// wait retries until an attempt acquires, ctx is done or PATIENCE runs
// out. Between attempts it sleeps until the first of: a watch event
// (local changes), the jittered poll interval (changes by other clients
// of a network filesystem, which no watch sees), the moment the holder
// seen becomes stale, or the PATIENCE deadline. All timers come from the
// given clock.
//
// Each turn of the loop is a small state machine (waiter): choose what to
// watch, watch it, look (or let events or timers tell), schedule the next
// poll, then sleep until the next reason to wake. What one turn tells the
// next is why the waiter woke (wake) and whether it is first in line.
func wait(ctx context.Context, r *waiter) (outcome, error) {
	defer r.stop()
	for {
		paths, afterPred := r.aim()
		paths, watching := r.watch(paths)
		if err := r.tryEvents(watching); r.acquired || err != nil {
			return r.got, err
		}
		looked, err := r.look(paths, watching, afterPred)
		switch {
		case r.acquired || err != nil:
			return r.got, err
		case looked == lookAgain:
			r.woke = wokeOther
			continue
		}
		r.schedulePoll(watching, looked == lookSkipped)
		now := r.w.clock.Now()
		if !r.deadline.IsZero() && !now.Before(r.deadline) {
			return outcome{}, r.spent()
		}
		next, checkPid, armIn := r.nextWake(now)
		if next <= 0 {
			// The holder turned stale since it was judged, or the poll is
			// due: attempt now.
			r.woke = wokeDue
			continue
		}
		if err := r.sleep(ctx, now.Add(next), checkPid, armIn); err != nil {
			return outcome{}, err
		}
	}
}

// wake is why a turn of the wait began, which decides what it does.
type wake int

const (
	// wokeBegun: the first turn, right after the acquisition's own
	// attempt. Behind others in the queue, it does not list the lock
	// again (who holds it is for those ahead to watch).
	wokeBegun wake = iota
	// wokeDue: the timer, for an attempt (the poll, a holder turning
	// stale, PATIENCE's end).
	wokeDue
	// wokeCheck: the timer, only to open the holder's death watch or to
	// check its pid, with no attempt due: this turn makes none.
	wokeCheck
	// wokeEvents: watch events, all of them known (their names were
	// hinted to the target).
	wokeEvents
	// wokeTold: events told what an attempt would find (tryEvent): this
	// turn makes none. Only ever set within a turn begun by wokeEvents.
	wokeTold
	// wokeGone: a watched path went (in the queue, our predecessor left,
	// most likely because it acquired).
	wokeGone
	// wokeOther: anything else (events lost, the holder's or the
	// predecessor's death, a look that must be made again at once).
	wokeOther
	// wokeHint: a datagram from a releaser (hints.go): one attempt, as
	// at a poll; only the rename it makes decides anything.
	wokeHint
)

// attempts reports whether a turn begun so may make an attempt.
func (k wake) attempts() bool { return k != wokeCheck && k != wokeTold }

// What a turn's look did.
type lookResult int

const (
	lookLooked  lookResult = iota // an attempt was made: the lock is busy
	lookSkipped                   // no attempt: this turn needs none
	lookAgain                     // start the next turn at once
)

// waiter is one waiting acquisition, between the turns of wait's loop.
type waiter struct {
	t        acquirable
	events   hinted          // t, if it learns from events; else nil
	lined    lined           // t, if it takes a free lock only in its turn; else nil
	hint     func(string)    // events.hint
	ctx      context.Context // bounds each attempt
	w        waitSpec
	start    time.Time
	deadline time.Time // PATIENCE's end, or zero
	timer    *clock.Timer
	wt       watch.Sub
	// The holder's death watch (first in line), our predecessor's.
	death, predDeath *proc.DeathWatch
	acquired         bool
	got              outcome // the attempt that acquired

	woke        wake
	first       bool // first in line (or not queueing), as this turn's watch found
	seen        entry
	staleAt     time.Time
	nextAttempt time.Time // when the next full poll is due
	armFor      Holder    // the holder whose death watch is due at armAt
	armAt       time.Time

	// The last attempt's refusal that passes by itself (fsys.ErrTransient).
	refused error
}

// newWaiter is the wait for t after the acquisition's first attempt, o,
// found it busy, or was refused (fsys.ErrTransient); ctx bounds each
// attempt.
func newWaiter(ctx context.Context, t acquirable, o outcome, start time.Time) *waiter {
	w := t.waitSpec()
	r := &waiter{t: t, ctx: ctx, w: w, start: start, woke: wokeBegun, seen: o.seen, staleAt: o.staleAt, timer: w.clock.Timer(time.Hour)}
	if o.err != nil {
		// A refused attempt saw nothing: the first turn attempts, even
		// behind others, as a poll would.
		r.woke = wokeDue
	}
	if h, ok := t.(hinted); ok {
		r.events, r.hint = h, h.hint
	}
	if q, ok := t.(lined); ok {
		r.lined = q
	}
	if w.patience > 0 {
		r.deadline = start.Add(w.patience)
	}
	return r
}

// spent is the error when PATIENCE ran out: busy, or, if the last attempt
// was refused (fsys.ErrTransient), that refusal (refusedFor).
func (r *waiter) spent() error {
	if r.refused != nil {
		return r.refusedFor(r.refused)
	}
	return r.t.busyError(r.seen, r.start)
}

// refusedFor is the error of a wait whose PATIENCE ran out while the
// filesystem refused its attempts (fsys.ErrTransient): not ErrBusy.
func (r *waiter) refusedFor(refused error) error {
	return fmt.Errorf("dlock: %s: the filesystem refused every attempt until PATIENCE %v ran out: %w", r.w.what, r.w.patience, refused)
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
	r.w.hints.close(r.acquired)
}

// won is an acquisition, by the attempt o: leaving is done in the
// background, so that Lock returns as soon as the lock is held.
func (r *waiter) won(o outcome) {
	r.acquired, r.got = true, o
	go r.leave()
}

func (r *waiter) stop() {
	r.timer.Stop()
	if !r.acquired {
		r.leave()
	}
}

// aim chooses what to watch this turn: PATH, or in the queue our
// predecessor's ticket. Watch first, then look: a change between the
// two is then either seen by the look or delivered as an event.
// afterPred: first in line, if the holder is our predecessor.
func (r *waiter) aim() (paths []string, afterPred bool) {
	q := r.w.queue
	if q == nil || q.Polled() {
		if q != nil {
			q.Target(r.w.clock.Now()) // (a ticket, if it has none)
		}
		return r.w.paths, false
	}
	switch {
	case r.first && r.woke == wokeEvents && r.wt.Watched():
		// Woken by an event while first in line: a hand-off, most
		// likely. Try at once; the queue is listed again at the next
		// timer (our place in it does not change by itself).
		return []string{q.Lock}, false
	case !r.first && r.woke == wokeGone && q.Pred != "":
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
	paths, watching := r.setWatch(paths)
	r.first = q == nil || q.Polled() || len(paths) == 1 && paths[0] == q.Lock
	r.tellFirst()
	if r.predDeath != nil { // (only ever behind others, in a queue)
		if pid, ok := lockdir.TicketPID(q.Pred); r.first || !ok || !r.predDeath.Watches(pid, 0) {
			r.predDeath.Close()
			r.predDeath = nil
		}
	}
	return paths, watching
}

// setWatch watches paths; if our predecessor left between the listing
// and the watch, it looks again now rather than at the next poll.
func (r *waiter) setWatch(paths []string) ([]string, bool) {
	q := r.w.queue
	watching := r.wt.Set(paths)
	for i := 0; !watching && q != nil && !q.Polled() && paths[0] != q.Lock && i < 3; i++ {
		paths = []string{q.Target(r.w.clock.Now())}
		watching = r.wt.Set(paths)
	}
	return paths, watching
}

// tellFirst tells the target whether it is first in line by its watch
// (only a watched queue's place is known without a listing).
func (r *waiter) tellFirst() {
	if r.lined != nil {
		q := r.w.queue
		r.lined.inLine(r.first && q != nil && !q.Polled())
	}
}

// tryEvents is the first waiter's reaction to events on PATH that named
// the new entry (tryEvent): it may take a free entry, or learn the new
// holder without a look (wokeTold).
func (r *waiter) tryEvents(watching bool) error {
	if r.woke != wokeEvents || !r.first || !watching || r.events == nil {
		return nil
	}
	o := r.events.tryHint(r.ctx)
	switch {
	case o.ok:
		r.won(o)
	case o.err != nil && fsys.IsTransient(o.err):
		// the look that follows tries again
	case o.err != nil:
		return o.err
	case o.known:
		r.woke = wokeTold // no attempt: the events told what it would
		if o.seen.name != "" {
			r.seen, r.staleAt = o.seen, o.staleAt
		}
	}
	return nil
}

// look makes an attempt, unless this turn needs none. Behind others,
// PATH is for those ahead to watch: a look could take the lock from them
// as it is handed over. So, there, only a timer (the poll, the safety
// net) looks: not the acquisition's own look just made, nor a wake-up to
// find our place in the queue (a predecessor exited). An attempt refused
// for now (fsys.ErrTransient) is recorded (judge) and made again at the
// next poll, never the slow one.
func (r *waiter) look(paths []string, watching, afterPred bool) (lookResult, error) {
	if !r.woke.attempts() || !r.first && watching && r.woke != wokeDue && r.woke != wokeHint {
		return lookSkipped, nil
	}
	o := r.t.try(r.ctx)
	refused := r.refused
	r.refused = nil
	if o.ok || o.err != nil {
		return lookLooked, r.judge(o, refused)
	}
	r.seen, r.staleAt = o.seen, o.staleAt
	if afterPred && !r.w.queue.PredHolds(knownToken(r.seen.holder)) {
		return lookAgain, nil // it left for another reason: find our place
	}
	if !watching && len(paths) > 0 {
		if _, added := r.wt.Update(paths); added {
			return lookAgain, nil // watchable now (PATH was missing): look once more
		}
	}
	return lookLooked, nil
}

// judge is what an attempt that acquired or failed means to the wait: won,
// or an error, or a refusal that passes by itself (fsys.ErrTransient),
// recorded and waited out as a busy lock is, within PATIENCE. An attempt
// given up when PATIENCE ran out while fsys was retrying the previous
// attempt's refusal (refused) reports that refusal.
func (r *waiter) judge(o outcome, refused error) error {
	switch {
	case o.ok:
		r.won(o)
		return nil
	case fsys.IsTransient(o.err):
		r.refused = o.err
		return nil
	case refused != nil && errors.As(o.err, new(*stuckError)):
		return r.refusedFor(refused)
	}
	return o.err
}

// schedulePoll sets when the next full poll is due, after a turn that
// looked or could have.
func (r *waiter) schedulePoll(watching, skipped bool) {
	if !r.woke.attempts() {
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
	r.woke = wokeDue
	if now.Before(r.nextAttempt) && now.Before(r.staleAt) && (r.deadline.IsZero() || now.Before(r.deadline)) &&
		(armIn >= 0 || checkPid && proc.PIDAlive(r.seen.holder.PID)) {
		r.woke = wokeCheck
	}
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
	w.hints.expect(r.seen)
	if w.blocked != nil {
		w.blocked()
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("dlock: %s: gave up after %v waiting for %s: %w",
			w.what, w.clock.Since(r.start).Round(time.Millisecond), r.seen.holder, context.Cause(ctx))
	case <-r.timer.C:
		r.timerFired(checkPid, armIn)
	case <-w.hints.c():
		r.woke = wokeHint
	case <-r.death.Done():
		r.woke = wokeOther
		r.death.MarkDead()
		r.death.Close()
		r.death = nil
	case <-r.predDeath.Done():
		r.woke = wokeOther
		w.queue.Dead = w.queue.Pred
		r.predDeath.Close()
		r.predDeath = nil
	case <-r.wt.Events():
		r.woke = r.drain()
		// Our predecessor's ticket was closed but is still there: its
		// waiter is exiting (see fsys.HoldOpen). kill(pid, 0) passes it
		// until it is reaped, so watch it end.
		if r.woke == wokeEvents && !r.first && r.predDeath == nil {
			if pid, ok := lockdir.TicketPID(w.queue.Pred); ok {
				r.predDeath = proc.WatchDeath(pid, 0)
			}
		}
	}
	return nil
}

// drain takes the names the events carry to the target (hint), and says
// what the events were: all known, a watched path gone, or lost.
func (r *waiter) drain() wake {
	complete, gone := r.wt.Drain(r.hint)
	switch {
	case complete:
		return wokeEvents
	case gone:
		return wokeGone
	}
	return wokeOther
}
