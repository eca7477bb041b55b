package dlock

import (
	"fmt"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
)

// Status is what a lock directory says about its lock at one moment.
type Status struct {
	Path   string // the lock's absolute path
	Exists bool   // the lock directory exists
	Held   bool   // someone holds the lock (or an unknown holder: see Holder.Unknown)
	Holder Holder // the holder, when Held
	// Fence is the holder's fence when held, the last holder's when free.
	Fence uint64
	// Age is how long ago the holder last refreshed the lock, by this
	// process's clock (by the holder's recorded time, so clock skew shows).
	Age time.Duration
	// Dead reports that the holder ran on this host and its process is gone.
	Dead bool
	// Stale reports that the lock may be reclaimed now, even by a process
	// that has just looked: its holder is dead, or the refresh time it
	// wrote is older than its TIMEOUT plus the clock-skew bound (see
	// WithMaxClockSkew). A waiter that keeps watching reclaims a holder it
	// saw unchanged for TIMEOUT, sooner.
	Stale bool
	// Entries is how many state entries the lock directory showed: 1, or
	// for an unknown state (Holder.Unknown) 0 or more than one, which a
	// listing that raced a change can show for a moment.
	Entries int
}

// String describes the status in one line, for people.
func (s Status) String() string {
	switch {
	case !s.Exists:
		return fmt.Sprintf("%s: free (no lock directory yet)", s.Path)
	case !s.Held:
		return fmt.Sprintf("%s: free (last fence %d)", s.Path, s.Fence)
	case s.Holder.Unknown && s.Entries > 1:
		return fmt.Sprintf("%s: unknown state: it shows %d state entries (a change in progress, look again; if it lasts, the lock directory is damaged)", s.Path, s.Entries)
	case s.Holder.Unknown:
		return fmt.Sprintf("%s: held by %s", s.Path, s.Holder)
	}
	var note string
	switch {
	case s.Dead:
		note = ", holder process is gone: stale"
	case s.Stale:
		note = ", not refreshed for its TIMEOUT: stale"
	}
	return fmt.Sprintf("%s: held by %s for %s, refreshed %s ago, TIMEOUT %s, fence %d%s",
		s.Path, s.Holder, s.Holder.Beat.Sub(s.Holder.Since).Round(time.Millisecond)+s.Age.Round(time.Millisecond),
		s.Age.Round(time.Millisecond), s.Holder.Timeout, s.Fence, note)
}

// Inspect reports the state of the lock directory at path without
// changing anything: free or held, and by whom. A missing directory is a
// free lock. A file, a symlink or a directory that is not a lock is
// ErrNotLock. A directory that shows no state entry, or more than one,
// is an unknown state (a listing can race a change): Held, with an
// unknown holder and Entries saying how many.
func Inspect(path string) (Status, error) {
	l, err := New(path)
	if err != nil {
		return Status{}, err
	}
	return l.Status()
}

// Status is Inspect for this Lock's path, with this Lock's clock. It
// waits for nothing but its own look at the directory (not for a refresh
// or release of this Lock that is stuck in a hung mount).
func (l *Lock) Status() (Status, error) {
	if l.cfg.clock == nil {
		return Status{}, errZero("Lock", "New")
	}
	return l.status()
}

func (l *Lock) status() (Status, error) {
	s := Status{Path: l.path}
	st, err := readState(l.path)
	if err != nil {
		return s, err
	}
	s.Exists, s.Entries = !st.Missing, st.Entries
	switch {
	case st.Missing:
	case st.Entries == 0 && !st.Queue: // empty: the next taker adopts it
	case st.Entries != 1:
		s.Held, s.Holder = true, Holder{Unknown: true, Entry: st.Names}
	case st.e.free:
		s.Fence = st.e.fence
	default:
		s.Held, s.Holder, s.Fence = true, st.e.holder, st.e.fence
		if !st.e.holder.Unknown {
			s.Age = l.cfg.clock.Since(st.e.holder.Beat)
			s.Dead = provablyDead(st.e.holder)
			s.Stale = s.Dead || s.Age >= trustAfter(st.e.holder.Timeout, l.cfg.maxSkew)
		}
	}
	return s, nil
}

// Break frees the lock at l's path if its holder is stale: not refreshed
// for its TIMEOUT, or a process on this host that is gone. With force it
// frees a fresh lock too; its holder then learns of the loss at its next
// heartbeat. Break reclaims the lock and releases it, so the fence keeps
// rising and a late holder's Unlock still fails; it never deletes the lock
// directory. It returns the status found before breaking. A fresh lock
// without force is an error matching ErrBusy; so is an unknown holder (an
// empty or unreadable lock directory), which only force breaks.
func (l *Lock) Break(force bool) (Status, error) { return l.breakLock(force, false) }

// BreakHold is Break that keeps the lock it reclaimed: on success with
// Status.Held, l holds the lock (heartbeating, with its own deadline) as
// after Lock, until Unlock. A tool that takes a lock from a live holder
// keeps others out until that holder has noticed and stopped (at its next
// refresh, at its deadline at the latest). If the lock was free or
// released meanwhile, l holds nothing.
func (l *Lock) BreakHold(force bool) (Status, error) { return l.breakLock(force, true) }

func (l *Lock) breakLock(force, hold bool) (Status, error) {
	if err := l.begin(); err != nil {
		return Status{}, err
	}
	defer l.end()
	l.op.Lock()
	defer l.op.Unlock()
	if err := l.checkFS(); err != nil {
		return Status{}, err
	}
	l.settle()
	before, err := l.status()
	if err != nil || !before.Held {
		return before, err
	}
	if !before.Stale && !force {
		return before, fmt.Errorf("dlock: not breaking %s: %w: held by %s, refreshed %s ago (TIMEOUT %s); only a forced break frees a live lock (dlock break -force)",
			l.path, ErrBusy, before.Holder, before.Age.Round(time.Millisecond), before.Holder.Timeout)
	}
	st, err := readState(l.path)
	if err != nil {
		return before, err
	}
	if done, err := l.breakable(st, before); done || err != nil {
		return before, err
	}
	ok, err := l.take(st.e, lockdir.NewToken(), true)
	if err != nil {
		return before, err
	}
	if !ok {
		return before, fmt.Errorf("dlock: not breaking %s: %w: another process took it first", l.path, ErrBusy)
	}
	l.logWarn("broke lock", "holder", before.Holder.String(), "forced", force)
	if hold {
		return before, nil
	}
	l.mu.Lock()
	l.disarm()
	fence := l.fence
	l.mu.Unlock()
	if err := l.release(fence); err != nil {
		return before, fmt.Errorf("dlock: breaking %s: releasing after the reclaim: %w", l.path, err)
	}
	return before, nil
}

// breakable judges a second look at the lock, st, against the status
// breakLock judged, before: done (with an error, or nil when nothing is
// left to break) unless the same holder still holds it. Called with l.op
// held.
func (l *Lock) breakable(st dirState, before Status) (done bool, err error) {
	switch {
	case st.Missing || st.Entries == 1 && st.e.free:
		return true, nil // released meanwhile
	case st.Entries > 1:
		return true, fmt.Errorf("dlock: not breaking %s: %w: it shows %d state entries (a change in progress, or a damaged lock): look again", l.path, ErrBusy, st.Entries)
	case st.Entries == 0 && st.Queue:
		return true, lockdir.NoEntryError(l.path, 0)
	case st.Entries == 0:
		return true, nil // empty: a free lock, never deleted
	case st.e.holder.Unknown && st.e.name != before.Holder.Entry ||
		!st.e.holder.Unknown && st.e.holder.Token != before.Holder.Token:
		// (A heartbeat renames the entry but keeps its token: the same
		// holder, and the reclaim below acts on its newest name.)
		return true, fmt.Errorf("dlock: not breaking %s: %w: it changed hands while we looked (now %s)", l.path, ErrBusy, st.e.holder)
	}
	return false, nil
}
