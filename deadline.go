package dlock

// The holder's side of the lease: what an acquisition starts (acquired,
// confirm), the heartbeat and its refresh, the deadline, losing the lock,
// and the release, which Unlock may leave pending.
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
	"errors"
	"fmt"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

// errDeadline: the acquisition's deadline passed before a release was done.
var errDeadline = errors.New("deadline passed")

// acquired records a successful acquisition whose rename was issued at
// issued, and starts the heartbeat and the deadline. Called with l.op held.
func (l *Lock) acquired(fence uint64, token, name string, issued time.Time, how string) {
	l.token, l.cur, l.seq, l.since, l.issued = token, name, 0, issued, issued
	l.seen, l.freeSeen = false, ""
	l.mu.Lock()
	l.knowsWaiters, l.ticket, l.plain = false, "", l.call != 0
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

// confirm is called right after an acquiring rename whose entry carries
// the time now. If this process was paused between reading the clock and
// the rename, or the rename took long, the deadline counted from now is
// that much nearer (or past), and others count the new entry as that much
// older: so it is refreshed at once, and the deadline counted from that
// refresh's issue (acquired armed no timer). The rule for an acquisition
// that completes late, even past its own deadline:
//   - refreshed, and the refresh's deadline is still ahead: held, from
//     the refresh;
//   - gone already: it was never ours to use (another reclaimed it):
//     false, and the attempt goes on;
//   - the refresh failed otherwise, or returned past its own deadline:
//     held if the acquisition's deadline is still ahead (the heartbeat
//     retries), else given up at once, released, and false: a lock
//     past its deadline is never reported acquired.
//
// Called with l.op held.
func (l *Lock) confirm(now time.Time) bool {
	late := l.cfg.clock.Since(now)
	if late < l.cfg.refresh {
		return true
	}
	issued := l.cfg.clock.Now()
	err := l.refresh(issued)
	l.mu.Lock()
	if errors.Is(err, lockdir.ErrGone) {
		l.held = false
		l.mu.Unlock()
		l.logWarn("lock taken over while acquiring it", "paused for", late)
		return false
	}
	if err == nil {
		l.deadline = issued.Add(l.cfg.timeout - l.cfg.margin)
	}
	at := l.cfg.clock.Now()
	if !at.Before(l.deadline) {
		l.pend(l.fence, false)
		l.mu.Unlock()
		l.logWarn("giving up a lock acquired past its deadline", "acquiring took", at.Sub(now), "refresh", errString(err))
		l.settle()
		return false
	}
	l.expiry.Reset(l.deadline.Sub(at))
	if err == nil {
		l.timer.Reset(max(l.cfg.refresh-at.Sub(issued), 0))
	} else {
		l.logWarn("refresh failed; retrying", "err", err, "deadline in", l.deadline.Sub(at))
		l.timer.Reset(min(l.cfg.refresh, l.cfg.poll))
	}
	l.mu.Unlock()
	return true
}

// errString is err's text, or "ok".
func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
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

// refresh renames our held entry to its next heartbeat name, issued at
// now. Called with l.op held.
func (l *Lock) refresh(now time.Time) error {
	next := lockdir.HeldName(l.Fence(), l.token, l.seq+1, l.since, now, l.cfg.timeout)
	if err := lockdir.Move(l.path, l.cur, next, l.walk); err != nil {
		return err
	}
	l.cur, l.seq, l.issued = next, l.seq+1, now
	return nil
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

// lostError describes a loss and, if the filesystem answers soon, who
// holds the lock now.
func (l *Lock) lostError(fence uint64, why string) error {
	return &LostError{Path: l.path, Fence: fence, Why: why, Now: describeSoon(l.path)}
}

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
	l.disarm()
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

// disarm ends the holding: no heartbeat, no deadline. Called with l.mu
// held.
func (l *Lock) disarm() {
	l.held = false
	l.timer.Stop()
	l.expiry.Stop()
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

// awaitRelease waits up to d for the release Unlock asked for:
// errDeadline if it did not come. Called with l.unlockMu held.
func (l *Lock) awaitRelease(d time.Duration) error {
	if l.unlockTimer == nil {
		l.unlockTimer = l.cfg.clock.Timer(d)
	} else {
		l.unlockTimer.Reset(d)
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

// release renames our held entry, of the given fence E, to free.E, or to
// free.E.q when it finds waiters in the queue (freeName). Called with l.op
// held.
//
// A refusal that passes (fsys.ErrTransient: on Windows an antivirus or an
// indexer has the entry open) is tried again, every quarter of a second at
// most, until the deadline (and for TIMEOUT of real time at most): a
// release refused for a moment still releases. Unlock waits for it until
// the deadline, as for any release.
func (l *Lock) release(fence uint64) error {
	free, queued := l.freeName(fence)
	err := lockdir.Move(l.path, l.cur, free, l.walk)
	for start := time.Now(); fsys.IsTransient(err) && time.Since(start) < l.cfg.timeout; {
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		if !l.cfg.clock.Now().Before(deadline) {
			break
		}
		time.Sleep(min(l.cfg.poll, 250*time.Millisecond))
		err = lockdir.Move(l.path, l.cur, free, l.walk)
	}
	if err != nil {
		return err
	}
	l.lastFree = entry{}
	if !queued { // (free.E.q is the queue's: we would only defer to it)
		l.lastFree = entry{name: free, free: true, fence: fence}
	}
	l.hintRelease(fence) // (waits for nothing)
	return nil
}

// freeName is the name the release of fence E renames our entry to:
// free.E.q if this holding knows of waiters (it took free.E.q, or waited
// in a polled queue, or has held for a poll interval or more, in which a
// waiter may have come) and one listing of the queue finds a ticket not
// ours; else free.E. A Lock taken and released at once by a caller
// nobody waited for lists nothing: that costs no server operation more.
// Called with l.op held.
func (l *Lock) freeName(fence uint64) (name string, queued bool) {
	l.mu.Lock()
	knows, plain, ticket := l.knowsWaiters, l.plain, l.ticket
	l.mu.Unlock()
	if !knows && !(plain && l.cfg.clock.Since(l.since) >= l.cfg.poll) {
		return lockdir.FreeName(fence), false
	}
	if lockdir.Waiting(l.path, ticket) {
		return lockdir.QueuedFreeName(fence), true
	}
	return lockdir.FreeName(fence), false
}
