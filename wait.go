package dlock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/benbjohnson/clock"
)

// waitSpec is what a waiting acquisition needs: what to watch, and one
// attempt that reports, when it fails, the holder it saw and when that
// holder becomes stale (the zero time if never by itself).
type waitSpec struct {
	what     string // for errors: "locking /x"
	paths    []string
	queue    *queue // for a single lock on a local filesystem, else nil
	local    bool   // the filesystem is local: a watch sees every change
	clock    clock.Clock
	patience time.Duration // < 0: no limit
	poll     time.Duration
	try      func() (ok bool, seen entry, staleAt time.Time, err error)
	hint     func(name string) // told the names events carry; may be nil
	// tryEvent, if not nil, replaces try for the first in line woken by
	// events: see Lock.tryEvent.
	tryEvent func() (ok bool, seen entry, staleAt time.Time, known bool, err error)
	blocked  func() // test hook; may be nil
	busy     func(seen entry, start time.Time) error
	// The attempt the caller made just before waiting, if it did: a
	// waiter whose first watch is on a predecessor's ticket does not
	// list the lock again (who holds it is for those ahead to watch).
	looked  bool
	seen    entry
	staleAt time.Time
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
func wait(ctx context.Context, w waitSpec, start time.Time) error {
	var deadline time.Time
	if w.patience > 0 {
		deadline = start.Add(w.patience)
	}
	wt := watch{}
	var death, predDeath *deathWatch // the holder's (first in line), our predecessor's
	// Leaving the queue (which wakes the next waiter), unwatching and
	// closing the pidfd: after an acquisition, done in the background,
	// so that Lock returns as soon as the lock is held.
	leave := func() {
		if w.queue != nil {
			w.queue.leave()
		}
		wt.close()
		death.close()
		predDeath.close()
	}
	acquired := false
	defer func() {
		if !acquired {
			leave()
		}
	}()
	timer := w.clock.Timer(time.Hour)
	defer timer.Stop()
	var (
		seen        entry
		staleAt     time.Time
		nextAttempt time.Time // when the next full poll is due
		quick       bool      // no attempt this round (a timer for the pid or pidfd, or events told all)
		first       bool      // first in line (or not queueing)
		armFor      Holder    // the holder whose death watch is due at armAt
		armAt       time.Time
		timed       = true // woken by the timer for an attempt (or starting)
		evented     bool   // woken by events, all of them known
		predGone    bool   // woken because a watched path went
	)
	for {
		// Watch first, then look: a change between the two is then either
		// seen by the look or delivered as an event.
		paths := w.paths
		afterPred := false // first in line, if the holder is our predecessor
		if w.queue != nil {
			// Woken by an event while first in line: a hand-off, most
			// likely. Try at once; the queue is listed again at the next
			// timer (our place in it does not change by itself).
			switch {
			case first && evented && wt.watched:
				paths = []string{w.queue.lock}
			case !first && predGone && w.queue.pred != "":
				// Our predecessor left, most likely because it acquired:
				// then we are first, which the attempt below checks
				// without listing the queue (with many waiters, the
				// listing is the costly part of a hand-off).
				paths = []string{w.queue.lock}
				afterPred = true
			default:
				paths = []string{w.queue.target(w.clock.Now())}
			}
		}
		predGone = false
		watching := wt.set(paths)
		// The predecessor left between the listing and the watch: look
		// again now rather than at the next poll.
		for i := 0; !watching && w.queue != nil && paths[0] != w.queue.lock && i < 3; i++ {
			paths = []string{w.queue.target(w.clock.Now())}
			watching = wt.set(paths)
		}
		first = w.queue == nil || len(paths) == 1 && paths[0] == w.queue.lock
		if predDeath != nil { // (only ever behind others, in a queue)
			if pred, ok := ticketProcess(w.queue.pred); first || !ok || !predDeath.watches(pred) {
				predDeath.close()
				predDeath = nil
			}
		}
		hinted := evented && first && watching
		evented = false
		if !quick && hinted && w.tryEvent != nil {
			ok, e, at, known, err := w.tryEvent()
			if ok {
				acquired = true
				go leave()
				return nil
			}
			if err != nil {
				return err
			}
			if known {
				quick = true // no attempt: the events told what it would
				if e.name != "" {
					seen, staleAt = e, at
				}
			}
		}
		// Behind others, PATH is for those ahead to watch: a look could
		// take the lock from them as it is handed over. So, there, only
		// a timer (the poll, the safety net) looks: not the Lock's own
		// look just made, nor a wake-up to find our place in the queue
		// (a predecessor exited).
		skipLook := !quick && !first && watching && (w.looked || !timed)
		if skipLook && w.looked {
			seen, staleAt = w.seen, w.staleAt
		}
		w.looked, timed = false, false
		if !skipLook && !quick {
			ok, e, at, err := w.try()
			if ok {
				acquired = true
				go leave()
				return nil
			}
			if err != nil {
				return err
			}
			seen, staleAt = e, at
			if afterPred && !w.queue.predHolds(seen.holder) {
				continue // it left for another reason: find our place
			}
			if !watching && len(paths) > 0 && wt.set(paths) {
				continue // watchable now (PATH was missing): look once more
			}
		}
		if !quick {
			poll := w.poll
			// Not the slow poll when no state entry was seen (listings
			// that missed it: no event follows, only a look finds it),
			// nor right behind the first in line: a first waiter stopped
			// (^Z) would hold up the line with the lock free.
			if watching && w.local && !(seen.holder.Unknown && seen.name == "") &&
				!(w.queue != nil && !first && w.queue.second) {
				poll *= localPollFactor
			}
			// A wake-up that did not look may bring the next poll forward,
			// never put it off: woken again and again (by closes of our
			// predecessor's ticket), a waiter would never poll.
			if at := w.clock.Now().Add(poll*3/4 + rand.N(poll/4+1)); !skipLook || nextAttempt.IsZero() || at.Before(nextAttempt) {
				nextAttempt = at
			}
		}
		quick = false
		now := w.clock.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return w.busy(seen, start)
		}
		next := nextAttempt.Sub(now)
		// First in line, with a holder on this host: learn of its death at
		// once (a pidfd on Linux), or else look at its pid at the plain
		// poll interval, so that a holder killed without a word is not
		// left for the slow poll. A pidfd costs a dozen system calls and a
		// goroutine, which a holder about to hand over is not worth: it is
		// opened once the holder has been seen for a tenth of the poll
		// interval (and finds a holder that died meanwhile at once).
		checkPid := false
		armIn := time.Duration(-1)
		if first && onThisHost(seen.holder) {
			if !death.watches(seen.holder) {
				death.close()
				death = nil
				if armFor.PID != seen.holder.PID || armFor.pstart != seen.holder.pstart || armAt.IsZero() {
					armFor, armAt = seen.holder, now.Add(w.poll/10)
				}
				if now.Before(armAt) {
					armIn = armAt.Sub(now)
				} else {
					death = watchDeath(seen.holder)
				}
			}
			checkPid = death == nil && armIn < 0 && w.poll < next
		} else {
			death.close()
			death = nil
		}
		if checkPid {
			next = w.poll
		}
		if armIn >= 0 && armIn < next {
			next = armIn
		}
		if !staleAt.IsZero() && staleAt.Sub(now) < next {
			next = staleAt.Sub(now)
		}
		if !deadline.IsZero() && deadline.Sub(now) < next {
			next = deadline.Sub(now)
		}
		if next <= 0 {
			// The holder turned stale since it was judged, or the poll is
			// due: attempt now.
			timed = true
			continue
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
		if w.blocked != nil {
			w.blocked()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlock: %s: gave up after %v waiting for %s: %w",
				w.what, w.clock.Since(start).Round(time.Millisecond), seen.holder, context.Cause(ctx))
		case <-timer.C:
			// Woken only to open the death watch, or to check the
			// holder's pid: no attempt unless one is due.
			now := w.clock.Now()
			quick = now.Before(nextAttempt) && now.Before(staleAt) && (deadline.IsZero() || now.Before(deadline)) &&
				(armIn >= 0 || checkPid && pidAlive(seen.holder.PID))
			timed = !quick
		case <-death.done():
			death.markDead()
			death.close()
			death = nil
		case <-predDeath.done():
			w.queue.dead = w.queue.pred
			predDeath.close()
			predDeath = nil
		case <-wt.events():
			evented, predGone = wt.drain(w.hint)
			// Our predecessor's ticket was closed but is still there: its
			// waiter is exiting (see openTicket). kill(pid, 0) passes it
			// until it is reaped, so watch it end.
			if evented && !predGone && !first && predDeath == nil {
				if pred, ok := ticketProcess(w.queue.pred); ok {
					predDeath = watchDeath(pred)
				}
			}
		}
	}
}
