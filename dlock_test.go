package dlock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/watch"
	"github.com/lockdir/dlock/internal/wine"
)

// The tests in this file are deterministic: all time comes from a mock
// clock, and a test advances it only once the code under test has said
// (through the test hooks) that it is blocked or has finished a heartbeat.

const never = 24 * time.Hour // a poll interval that never fires in a test

// rig is a mock clock and a lock path.
type rig struct {
	t    *testing.T
	clk  *clock.Mock
	path string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	return &rig{t: t, clk: clk, path: filepath.Join(t.TempDir(), "lock")}
}

func (r *rig) lock(opts ...Option) *Lock {
	r.t.Helper()
	// One mock clock for every Lock: no skew between them, so that a
	// holder's written time counts from TIMEOUT on (the skew tests set
	// their own bound).
	l, err := New(r.path, append([]Option{WithClock(r.clk), WithPollInterval(never), WithMaxClockSkew(0)}, opts...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	beats := make(chan struct{}, 100)
	blocked := make(chan struct{}, 100)
	l.testBeat = func() { beats <- struct{}{} }
	l.testBlocked = func() { blocked <- struct{}{} }
	r.t.Cleanup(func() {
		l.mu.Lock()
		if l.timer != nil {
			l.timer.Stop()
		}
		l.mu.Unlock()
	})
	hooks[l] = lockHooks{beats, blocked}
	return l
}

type lockHooks struct{ beats, blocked chan struct{} }

var hooks = map[*Lock]lockHooks{}

// waitFor receives from ch or fails after a real-time safety limit (which
// only a broken test reaches: nothing here sleeps to let things settle).
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// lockAsync starts l.Lock(ctx) and returns its result channel once the
// waiter is blocked.
func (r *rig) lockAsync(ctx context.Context, l *Lock) <-chan error {
	r.t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Lock(ctx) }()
	select {
	case <-hooks[l].blocked:
	case err := <-done:
		r.t.Fatalf("Lock returned %v, want it to block", err)
	case <-time.After(10 * time.Second):
		r.t.Fatal("Lock never blocked")
	}
	return done
}

func notYet(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s: Lock returned %v too early", what, err)
	default:
	}
}

// entryName returns the single state entry in the lock directory.
func (r *rig) entryName() string {
	r.t.Helper()
	names, err := fsys.ReadNames(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	var state []string
	for _, n := range names {
		if lockdir.IsStateName(n) {
			state = append(state, n)
		}
	}
	if len(state) != 1 {
		r.t.Fatalf("lock directory holds state entries %q, want exactly one", state)
	}
	return state[0]
}

// pause stops l's heartbeat and deadline timers, as if its process were
// stopped.
func pause(l *Lock) {
	l.mu.Lock()
	l.timer.Stop()
	l.expiry.Stop()
	l.mu.Unlock()
}

func mustLock(t *testing.T, l *Lock) {
	t.Helper()
	if err := l.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A lock path too long for the transitions' stack buffer (Linux) takes
// the portable system calls, with the same results: a full cycle, a wait
// woken by a release, and a loss told at Unlock.
func TestLongPathTakesPortableCalls(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 200), strings.Repeat("e", 200))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	r.path = filepath.Join(dir, "lock")
	a, b := r.lock(), r.lock()
	mustLock(t, a)
	done := r.lockAsync(context.Background(), b)
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the waiter"); err != nil {
		t.Fatal(err)
	}
	if b.Fence() != a.Fence()+1 {
		t.Fatalf("fences %d then %d", a.Fence(), b.Fence())
	}
	// Taken from under b: its Unlock is ErrLost and leaves the entry be.
	name := r.entryName()
	next := strings.Replace(name, "held."+strconv.FormatUint(b.Fence(), 10)+".", "held."+strconv.FormatUint(b.Fence()+1, 10)+".", 1)
	if err := os.Rename(filepath.Join(r.path, name), filepath.Join(r.path, next)); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("Unlock after the entry was taken = %v, want ErrLost", err)
	}
	if got := r.entryName(); got != next {
		t.Fatalf("entry %s after a late Unlock, want %s untouched", got, next)
	}
}

func TestLockUnlockAndFence(t *testing.T) {
	r := newRig(t)
	a, b := r.lock(), r.lock()
	mustLock(t, a)
	first := a.Fence()
	if e := parseEntry(r.entryName()); e.free || e.holder.Token != a.token || e.holder.PID != os.Getpid() || e.holder.Timeout != DefaultTimeout {
		t.Fatalf("held entry %+v does not record this holder", e)
	}
	if ok, err := b.TryLock(); ok || err != nil {
		t.Fatalf("TryLock of a held lock = %v, %v; want false, nil", ok, err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if n := r.entryName(); n != lockdir.FreeName(first) {
		t.Fatalf("after Unlock the entry is %q, want %q", n, lockdir.FreeName(first))
	}
	for i := 1; i <= 3; i++ {
		for _, l := range []*Lock{b, a} {
			mustLock(t, l)
			if l.Fence() <= first {
				t.Fatalf("fence %d did not rise above %d", l.Fence(), first)
			}
			first = l.Fence()
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Unlock(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Unlock = %v, want ErrNotHeld", err)
	}
}

func TestLockWhileHeldIsErrHeld(t *testing.T) {
	r := newRig(t)
	a := r.lock()
	mustLock(t, a)
	if err := a.Lock(context.Background()); !errors.Is(err, ErrHeld) {
		t.Fatalf("Lock of a held Lock = %v, want ErrHeld", err)
	}
	if ok, err := a.TryLock(); ok || !errors.Is(err, ErrHeld) {
		t.Fatalf("TryLock of a held Lock = %v, %v; want ErrHeld", ok, err)
	}
}

func TestPatienceEndsExactly(t *testing.T) {
	r := newRig(t)
	a, b := r.lock(WithTimeout(time.Hour)), r.lock(WithPatience(5*time.Second))
	mustLock(t, a)
	done := r.lockAsync(context.Background(), b)
	r.clk.Add(5*time.Second - time.Nanosecond)
	notYet(t, done, "a nanosecond before PATIENCE")
	r.clk.Add(time.Nanosecond)
	err := waitFor(t, done, "Lock to give up at PATIENCE")
	var be *BusyError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &be) {
		t.Fatalf("Lock = %v, want a *BusyError", err)
	}
	if be.Waited != 5*time.Second || be.Holder.PID != os.Getpid() || be.Holder.Fence != a.Fence() || be.Path != r.path {
		t.Fatalf("BusyError %+v does not name the wait and the holder", be)
	}
	for _, want := range []string{r.path, "pid", "waited 5s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestPatienceZeroIsOneAttempt(t *testing.T) {
	r := newRig(t)
	a, b := r.lock(), r.lock(WithPatience(0))
	mustLock(t, a)
	if err := b.Lock(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("Lock with PATIENCE 0 = %v, want ErrBusy", err)
	}
}

// A paused holder (its heartbeat stopped) is reclaimed exactly at its own
// TIMEOUT, even by a waiter whose TIMEOUT is shorter; its late Unlock
// reports ErrLost and leaves the successor's lock alone.
func TestReclaimExactlyAtHolderTimeout(t *testing.T) {
	r := newRig(t)
	a := r.lock(WithTimeout(3 * time.Second))
	b := r.lock(WithTimeout(200 * time.Millisecond))
	mustLock(t, a)
	pause(a)
	held := r.entryName()
	done := r.lockAsync(context.Background(), b)
	r.clk.Add(3*time.Second - time.Nanosecond)
	notYet(t, done, "a nanosecond before the holder's TIMEOUT")
	if n := r.entryName(); n != held {
		t.Fatalf("entry changed from %q to %q before TIMEOUT", held, n)
	}
	r.clk.Add(time.Nanosecond)
	if err := waitFor(t, done, "reclaim at TIMEOUT"); err != nil {
		t.Fatal(err)
	}
	if b.Fence() != a.Fence()+1 {
		t.Fatalf("reclaim fence %d, want %d", b.Fence(), a.Fence()+1)
	}
	successor := r.entryName()
	err := a.Unlock()
	if !errors.Is(err, ErrLost) {
		t.Fatalf("late Unlock = %v, want ErrLost", err)
	}
	if !strings.Contains(err.Error(), "held by pid") {
		t.Errorf("ErrLost %q does not say who holds the lock now", err)
	}
	select {
	case <-a.Lost():
	default:
		t.Fatal("Lost not closed after the late Unlock found the loss")
	}
	if n := r.entryName(); n != successor {
		t.Fatalf("late Unlock changed the successor's entry %q to %q", successor, n)
	}
	if err := b.Unlock(); err != nil {
		t.Fatalf("successor's Unlock = %v", err)
	}
}

// The same judgement, made by TryLock calls of a fresh Lock: the record's
// refresh time alone decides, to the nanosecond.
// A waiter paused after reading its clock and before listing the lock
// sees, after the pause, a new holder's fresh entry. It must count that
// entry as seen from the listing on, not from before the pause: the chaos
// test caught a reclaim of a live holder, 14 ms after it acquired, by a
// waiter that had been stopped there for a second.
func TestPauseBeforeListingDoesNotAgeWhatIsSeen(t *testing.T) {
	r := newRig(t)
	old, waiter := r.lock(), r.lock()
	mustLock(t, old)
	var fresh *Lock
	waiter.testStep = func(step string) {
		if step != "look" || fresh != nil {
			return
		}
		// Paused for twice TIMEOUT; meanwhile the lock changed hands.
		r.clk.Add(2 * DefaultTimeout)
		if err := old.Unlock(); err != nil {
			t.Error(err)
		}
		fresh = r.lock()
		mustLock(t, fresh)
	}
	for i := range 2 {
		if ok, err := waiter.TryLock(); ok || err != nil {
			t.Fatalf("TryLock %d after the pause = %v, %v: it took the lock from a holder that acquired it just now", i, ok, err)
		}
	}
	if err := fresh.Unlock(); err != nil {
		t.Fatalf("the fresh holder's Unlock: %v", err)
	}
}

// A Lock paused right after its acquiring rename has an entry older than
// it thinks. Past the refresh interval it refreshes the entry before Lock
// returns; if the entry was reclaimed meanwhile, it does not hold the lock.
func TestPauseWhileAcquiringRefreshesOrGivesUp(t *testing.T) {
	t.Run("refreshed", func(t *testing.T) {
		r := newRig(t)
		l := r.lock()
		mustLock(t, l)
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		l.testStep = func(step string) {
			if step == "taken" {
				r.clk.Add(l.cfg.refresh)
			}
		}
		mustLock(t, l)
		e := parseEntry(r.entryName())
		if e.holder.Sequence != 1 || !e.holder.Beat.Equal(r.clk.Now()) {
			t.Fatalf("entry %s: want it refreshed (seq 1, beat %v)", e.name, r.clk.Now())
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("taken over", func(t *testing.T) {
		r := newRig(t)
		l, other := r.lock(), r.lock()
		mustLock(t, l)
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		l.testStep = func(step string) {
			if step != "taken" {
				return
			}
			l.testStep = nil
			r.clk.Add(DefaultTimeout)
			if ok, err := other.TryLock(); !ok || err != nil {
				t.Errorf("the other Lock's TryLock = %v, %v; want it to reclaim the stale entry", ok, err)
			}
		}
		if ok, err := l.TryLock(); ok || err != nil {
			t.Fatalf("TryLock = %v, %v; want false: the entry was reclaimed before it returned", ok, err)
		}
		if err := l.Unlock(); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Unlock = %v, want ErrNotHeld", err)
		}
		if err := other.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTryLockReclaimsAtTimeout(t *testing.T) {
	r := newRig(t)
	a := r.lock(WithTimeout(time.Second))
	mustLock(t, a)
	pause(a)
	r.clk.Add(time.Second - time.Nanosecond)
	if ok, err := r.lock().TryLock(); ok || err != nil {
		t.Fatalf("TryLock before TIMEOUT = %v, %v", ok, err)
	}
	r.clk.Add(time.Nanosecond)
	if ok, err := r.lock().TryLock(); !ok || err != nil {
		t.Fatalf("TryLock at TIMEOUT = %v, %v; want the stale lock reclaimed", ok, err)
	}
}

func TestHeartbeatKeepsLockAcrossTenTimeouts(t *testing.T) {
	r := newRig(t)
	const timeout = 3 * time.Second
	a, b := r.lock(WithTimeout(timeout)), r.lock()
	mustLock(t, a)
	fence := a.Fence()
	for i := 0; i < 30; i++ {
		r.clk.Add(timeout / 3)
		waitFor(t, hooks[a].beats, "heartbeat")
		if ok, err := b.TryLock(); ok || err != nil {
			t.Fatalf("after %v: TryLock = %v, %v; the heartbeat should keep the lock held", time.Duration(i+1)*timeout/3, ok, err)
		}
	}
	e := parseEntry(r.entryName())
	if e.holder.Token != a.token || e.holder.Sequence != 30 || e.fence != fence {
		t.Fatalf("entry %+v after 30 heartbeats", e)
	}
	select {
	case <-a.Lost():
		t.Fatal("Lost closed while the heartbeat ran")
	default:
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestHeartbeatDetectsLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(r *rig)
	}{
		{"entry reclaimed", func(r *rig) {
			n := r.entryName()
			if err := os.Rename(filepath.Join(r.path, n), filepath.Join(r.path, "held.99.x")); err != nil {
				r.t.Fatal(err)
			}
		}},
		{"directory removed", func(r *rig) {
			if err := os.RemoveAll(r.path); err != nil {
				r.t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			a := r.lock(WithTimeout(3 * time.Second))
			mustLock(t, a)
			lost := a.Lost()
			tc.break_(r)
			r.clk.Add(time.Second)
			waitFor(t, hooks[a].beats, "heartbeat")
			waitFor(t, lost, "Lost to close")
			if err := a.Unlock(); !errors.Is(err, ErrLost) {
				t.Fatalf("Unlock after loss = %v, want ErrLost", err)
			}
		})
	}
}

// Do cancels fn's context when the lock is lost.
func TestDoCancelsOnLoss(t *testing.T) {
	r := newRig(t)
	a := r.lock(WithTimeout(3 * time.Second))
	err := a.Do(context.Background(), func(ctx context.Context) error {
		// The removal's error is checked and the wait is bounded: a lock
		// left in place is never lost, and this test then hung (under
		// Wine 8, where os.RemoveAll fails: internal/wine).
		if err := os.RemoveAll(r.path); err != nil {
			t.Errorf("removing the lock under its holder: %v", err)
			return err
		}
		r.clk.Add(time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("fn's context not cancelled 10 s after the lock directory was removed")
			return errors.New("not cancelled")
		}
		if !errors.Is(context.Cause(ctx), ErrLost) {
			t.Errorf("cause %v, want ErrLost", context.Cause(ctx))
		}
		return ctx.Err()
	})
	if !errors.Is(err, ErrLost) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want fn's context.Canceled joined with ErrLost", err)
	}
}

func TestContextEndsWait(t *testing.T) {
	r := newRig(t)
	a, b := r.lock(), r.lock()
	mustLock(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	done := r.lockAsync(ctx, b)
	cancel()
	if err := waitFor(t, done, "Lock to see ctx done"); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("Lock = %v, want context.Canceled naming the holder", err)
	}
	// And a context already done: no attempt at all.
	if err := b.Lock(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock(done ctx) = %v", err)
	}
	// b is usable afterwards.
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	mustLock(t, b)
}

// A release wakes a waiter through its fsnotify watch, with no clock
// movement and no polling at all.
func TestReleaseWakesWaiter(t *testing.T) {
	eachHub(t, func(t *testing.T) {
		r := newRig(t)
		a, b := r.lock(), r.lock()
		mustLock(t, a)
		done := r.lockAsync(context.Background(), b)
		if err := a.Unlock(); err != nil {
			t.Fatal(err)
		}
		if err := waitFor(t, done, "the watch to wake the waiter"); err != nil {
			t.Fatal(err)
		}
	})
}

// eachHub runs f with each watcher this OS can use: on Linux, inotify
// itself and fsnotify (which the other systems use).
func eachHub(t *testing.T, f func(t *testing.T)) {
	for _, name := range watch.Backends() {
		t.Run(name, func(t *testing.T) {
			t.Cleanup(watch.Use(name))
			f(t)
		})
	}
}

// Waiters queue: each release wakes the first in line, and the next one
// is woken by the first's leaving the queue, in arrival order. The mock
// clock never moves, so no poll can stand in for a missed wake-up: every
// acquisition here comes from a watch event.
func TestWaitersWakeInArrivalOrder(t *testing.T) {
	eachHub(t, func(t *testing.T) {
		r := newRig(t)
		holder := r.lock()
		mustLock(t, holder)
		var waiters []*Lock
		var dones []<-chan error
		for range 4 {
			w := r.lock()
			waiters, dones = append(waiters, w), append(dones, r.lockAsync(context.Background(), w))
			r.clk.Add(time.Microsecond) // tickets sort by arrival time
		}
		if names, err := fsys.ReadNames(filepath.Join(r.path, lockdir.QueueDir)); err != nil || len(names) != len(waiters) {
			t.Fatalf("queue holds %q (%v), want %d tickets", names, err, len(waiters))
		}
		inTurn(t, holder, waiters, dones)
	})
}

// inTurn has holder unlock, and checks that the waiters acquire one after
// another in the order given, each once the one before unlocked. (Only
// the next one can take it: if another did, the next would never return.)
func inTurn(t *testing.T, holder *Lock, waiters []*Lock, dones []<-chan error) {
	t.Helper()
	prev := holder
	for i, w := range waiters {
		if err := prev.Unlock(); err != nil {
			t.Fatal(err)
		}
		if err := waitFor(t, dones[i], fmt.Sprintf("waiter %d to acquire in turn", i)); err != nil {
			t.Fatal(err)
		}
		for _, later := range dones[i+1:] {
			notYet(t, later, fmt.Sprintf("while waiter %d holds", i))
		}
		prev = w
	}
	if err := prev.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// A waiter whose predecessor gives up does not take itself for the first
// in line: it sees that the holder is not its predecessor, and watches the
// ticket before.
func TestWaiterWhosePredecessorGaveUpKeepsItsPlace(t *testing.T) {
	eachHub(t, func(t *testing.T) {
		r := newRig(t)
		holder, w1, w2, w3 := r.lock(), r.lock(), r.lock(), r.lock()
		mustLock(t, holder)
		d1 := r.lockAsync(context.Background(), w1)
		r.clk.Add(time.Microsecond) // tickets sort by arrival time
		ctx, cancel := context.WithCancel(context.Background())
		d2 := r.lockAsync(ctx, w2)
		r.clk.Add(time.Microsecond)
		d3 := r.lockAsync(context.Background(), w3)
		cancel()
		if err := waitFor(t, d2, "the second waiter to give up"); !errors.Is(err, context.Canceled) {
			t.Fatalf("second waiter: %v, want context.Canceled", err)
		}
		waitFor(t, hooks[w3].blocked, "the third waiter to find its place")
		if n := watchersOf(r.path); n != 1 {
			t.Fatalf("%d waits watch the lock directory after the second gave up, want 1 (the first in line)", n)
		}
		inTurn(t, holder, []*Lock{w1, w3}, []<-chan error{d1, d3})
	})
}

// watchersOf counts the waits of this process that watch path.
func watchersOf(path string) int { return watch.Subscribers(path) }

// The first waiter learns of a new holder that took over in one rename
// (from the event that names its entry, or from a listing if the events
// said too little, as fsnotify's separate rename and create may) and
// wakes when that holder turns stale by its own, shorter TIMEOUT, without
// any poll: it reclaims it then. (This test does not tell the two ways
// apart; the bench's throughput figures do.)
func TestFirstWaiterLearnsNewHolderFromEvent(t *testing.T) {
	eachHub(t, func(t *testing.T) {
		r := newRig(t)
		holder, waiter := r.lock(), r.lock()
		mustLock(t, holder)
		done := r.lockAsync(context.Background(), waiter)
		// The lock passes, in one rename, to a holder on another host
		// with a TIMEOUT of 1s.
		now := r.clk.Now()
		next := lockdir.FormatHeld(holder.Fence()+1, lockdir.NewToken(), 0, now, now, time.Second,
			lockdir.Identity{PID: 4242, HostID: "e1", Host: "elsewhere"})
		if err := os.Rename(filepath.Join(r.path, r.entryName()), filepath.Join(r.path, next)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, hooks[waiter].blocked, "the waiter to take in the event")
		notYet(t, done, "before the new holder's TIMEOUT")
		r.clk.Add(time.Second)
		if err := waitFor(t, done, "the reclaim at the new holder's TIMEOUT"); err != nil {
			t.Fatal(err)
		}
		if f := waiter.Fence(); f != holder.Fence()+2 {
			t.Fatalf("waiter's fence %d, want %d", f, holder.Fence()+2)
		}
		waiter.Unlock()
	})
}

// Waiters are woken by events even when the lock directory is removed
// and made anew under them, or the watcher loses events: they watch
// again and look again.
func TestWaitersSurviveRemovedDirAndLostEvents(t *testing.T) {
	eachHub(t, func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			disturb func(r *rig)
		}{
			{"lock directory removed", func(r *rig) {
				// Moved away first, so that the removal cannot race with the
				// waiters' queue and leave half a lock behind.
				gone := r.path + ".gone"
				if err := os.Rename(r.path, gone); err != nil {
					r.t.Fatal(err)
				}
				if err := os.RemoveAll(gone); err != nil {
					r.t.Fatal(err)
				}
			}},
			{"events lost", func(*rig) { watch.Overflow() }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if why := wine.Skip("a directory removed while a watch has it open stays delete-pending (no POSIX delete semantics), and Wine may tell the watch nothing: the waiters find out at their poll, which this test turns off"); why != "" && tc.name == "lock directory removed" {
					t.Skip(why)
				}
				r := newRig(t)
				holder := r.lock()
				mustLock(t, holder)
				a, b := r.lock(), r.lock()
				doneA := r.lockAsync(context.Background(), a)
				r.clk.Add(time.Microsecond)
				doneB := r.lockAsync(context.Background(), b)
				tc.disturb(r)
				holder.Unlock() // ErrLost once the directory went
				var first, second *Lock
				var secondDone <-chan error
				select {
				case err := <-doneA:
					first, second, secondDone = a, b, doneB
					if err != nil {
						t.Fatal(err)
					}
				case err := <-doneB:
					first, second, secondDone = b, a, doneA
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("no waiter was woken")
				}
				if err := first.Unlock(); err != nil {
					t.Fatal(err)
				}
				if err := waitFor(t, secondDone, "the second waiter"); err != nil {
					t.Fatal(err)
				}
				second.Unlock()
			})
		}
	})
}

// One process waits on more locks than it may have inotify instances (128
// per user by default): the waits share one watcher, so every one of them
// is still woken by an event, not by a poll.
func TestManyWaitsShareOneWatcher(t *testing.T) {
	eachHub(t, func(t *testing.T) {
		const n = 200
		dir := t.TempDir()
		clk := clock.NewMock()
		var holders, waiters []*Lock
		var dones []chan error
		for i := range n {
			path := filepath.Join(dir, strconv.Itoa(i))
			h, err := New(path, WithClock(clk), WithPollInterval(never))
			if err != nil {
				t.Fatal(err)
			}
			w, err := New(path, WithClock(clk), WithPollInterval(never))
			if err != nil {
				t.Fatal(err)
			}
			mustLock(t, h)
			blocked := make(chan struct{}, 100)
			w.testBlocked = func() { blocked <- struct{}{} }
			done := make(chan error, 1)
			go func() { done <- w.Lock(context.Background()) }()
			waitFor(t, blocked, "a waiter to block")
			holders, waiters, dones = append(holders, h), append(waiters, w), append(dones, done)
		}
		for _, h := range holders {
			if err := h.Unlock(); err != nil {
				t.Fatal(err)
			}
		}
		for i, done := range dones {
			if err := waitFor(t, done, fmt.Sprintf("waiter %d", i)); err != nil {
				t.Fatal(err)
			}
			waiters[i].Unlock()
		}
	})
}

func TestBadPathsFailAtOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("precious"), 0o644)
	target := filepath.Join(dir, "target")
	os.Mkdir(target, 0o755)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	foreign := filepath.Join(dir, "foreign")
	os.Mkdir(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "data"), []byte("precious"), 0o644)

	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"regular file", file, ErrNotLock},
		{"symlink", link, ErrNotLock},
		{"foreign directory", foreign, ErrNotLock},
		{"missing parent", filepath.Join(dir, "no", "such", "lock"), fs.ErrNotExist},
		{"parent is a file", filepath.Join(file, "lock"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if why := wine.Skip("Wine 8's CreateSymbolicLink reports success and makes nothing"); why != "" && tc.name == "symlink" {
				t.Skip(why)
			}
			l, err := New(tc.path) // no PATIENCE limit: it must not wait
			if err != nil {
				t.Fatal(err)
			}
			err = l.Lock(context.Background())
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Lock = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.path) && !strings.Contains(err.Error(), filepath.Dir(tc.path)) {
				t.Errorf("error %q does not name the path", err)
			}
			if _, err := Inspect(tc.path); err == nil && tc.want != fs.ErrNotExist && tc.want != nil {
				t.Errorf("Inspect accepted %s", tc.name)
			}
		})
	}
	// Nothing was touched.
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Error("the file changed")
	}
	if b, _ := os.ReadFile(filepath.Join(foreign, "data")); string(b) != "precious" {
		t.Error("the foreign directory changed")
	}
	if names, _ := fsys.ReadNames(target); len(names) != 0 {
		t.Errorf("the symlink's target gained %q", names)
	}
	if _, err := os.Lstat(filepath.Join(dir, "no")); err == nil {
		t.Error("a missing parent was created")
	}
}

func TestNewValidatesOptions(t *testing.T) {
	for _, opts := range [][]Option{
		{WithTimeout(0)},
		{WithTimeout(time.Second), WithRefresh(time.Second)},
		{WithRefresh(-1)},
		{WithPollInterval(0)},
		{WithClock(nil)},
		{WithMargin(0)},
		{WithTimeout(3 * time.Second), WithMargin(2 * time.Second)}, // REFRESH 1s + MARGIN 2s
		{WithMaxClockSkew(-1)},
	} {
		if _, err := New("x", opts...); err == nil {
			t.Errorf("New accepted %d bad options", len(opts))
		}
	}
	if _, err := New(""); err == nil {
		t.Error("New accepted an empty path")
	}
}

// Foreign files beside a valid entry are left alone and do not stop the lock.
func TestForeignFilesBesideEntryAreIgnored(t *testing.T) {
	r := newRig(t)
	a := r.lock()
	mustLock(t, a)
	a.Unlock()
	junk := filepath.Join(r.path, "README")
	os.WriteFile(junk, []byte("note"), 0o644)
	mustLock(t, a)
	a.Unlock()
	if b, err := os.ReadFile(junk); err != nil || string(b) != "note" {
		t.Fatal("a foreign file in the lock directory was touched")
	}
}

// An empty directory at the path (a user's mkdir, another tool's lock) is
// an unknown holder: reclaimed only after TIMEOUT unchanged, by rmdir.
// tree lists everything under dir (names, with types and sizes), to
// prove that a failed call touched nothing.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		size := fi.Size()
		if fi.IsDir() {
			size = 0
		}
		fmt.Fprintf(&b, "%s %v %d\n", rel, fi.Mode(), size)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A creator killed between making its staging directory and renaming it
// into place leaves the stage beside the lock; whoever creates the lock
// next removes it, once it is older than TIMEOUT. Anything else named like
// a stage is left exactly as it was: a fresh stage (its creator may be
// only slow), one holding other things, a file, a symlink, another lock's.
func TestCreatorSweepsStagesOfDeadCreators(t *testing.T) {
	r := newRig(t)
	dir := filepath.Dir(r.path)
	old := r.clk.Now().Add(-2 * time.Second)
	mk := func(p string, children ...string) {
		for _, c := range append([]string{""}, children...) {
			if err := os.MkdirAll(filepath.Join(p, c), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		os.Chtimes(p, old, old)
	}
	dead := lockdir.StagePath(r.path, "new", "0123456789abcdef")
	mk(dead, lockdir.HeldName(1, lockdir.NewToken(), 0, old, old, time.Second), lockdir.QueueDir)
	claimed := lockdir.StagePath(r.path, "old", "00000000000000aa") // a sweeper died too
	mk(claimed, "free.3")
	fresh := lockdir.StagePath(r.path, "new", "1111111111111111")
	mk(fresh, lockdir.QueueDir)
	os.Chtimes(fresh, r.clk.Now(), r.clk.Now())
	full := lockdir.StagePath(r.path, "new", "2222222222222222")
	mk(full, "free.1")
	os.WriteFile(filepath.Join(full, "data"), []byte("precious"), 0o644)
	os.Chtimes(full, old, old)
	file := lockdir.StagePath(r.path, "new", "3333333333333333")
	os.WriteFile(file, []byte("precious"), 0o644)
	target := filepath.Join(dir, "target")
	mk(target, "free.1")
	link := lockdir.StagePath(r.path, "new", "4444444444444444")
	os.Symlink(target, link)
	other := lockdir.StagePath(filepath.Join(dir, "other"), "new", "5555555555555555")
	mk(other, "free.1")
	odd := filepath.Join(dir, "."+filepath.Base(r.path)+".dlock-new-XYZ")
	mk(odd)
	before := tree(t, dir)

	mustLock(t, r.lock(WithTimeout(time.Second)))
	for _, p := range []string{dead, claimed} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was not swept (%v)", filepath.Base(p), err)
		}
	}
	var kept []string
	for _, line := range strings.Split(before, "\n") {
		if !strings.Contains(line, filepath.Base(dead)) && !strings.Contains(line, filepath.Base(claimed)) {
			kept = append(kept, line)
		}
	}
	after := tree(t, dir)
	for _, line := range kept {
		if !strings.Contains(after, line) {
			t.Errorf("%q changed; before:\n%s\nafter:\n%s", line, before, after)
		}
	}
}

// The same for a semaphore's directory, made by the same staging.
func TestSemaphoreCreatorSweepsDeadStages(t *testing.T) {
	r := newRig(t)
	old := r.clk.Now().Add(-2 * time.Second)
	dead := lockdir.StagePath(r.path, "new", "0123456789abcdef")
	os.MkdirAll(filepath.Join(dead, "size.3"), 0o755)
	os.Chtimes(dead, old, old)
	s, err := NewSemaphore(r.path, 3, WithClock(r.clk), WithPollInterval(never), WithTimeout(time.Second), WithMaxClockSkew(0))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryAcquire(); !ok || err != nil {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	names, _ := fsys.ReadNames(filepath.Dir(r.path))
	if len(names) != 1 {
		t.Fatalf("beside the semaphore: %q, want nothing", names)
	}
	s.Release()
}

// A creator paused after making its stage, long enough for another
// process to sweep it, finds it gone and tries again: Lock succeeds.
func TestCreatorWhoseStageWasSweptTriesAgain(t *testing.T) {
	r := newRig(t)
	swept := 0
	f := func(stage string) {
		if swept++; swept == 1 {
			lockdir.SweepStages(r.path, time.Now().Add(time.Hour), time.Second, lockdir.StageMember) // real time: the stage's mtime is
			if _, err := os.Lstat(stage); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the stage was not swept: %v", err)
			}
		}
	}
	lockdir.TestStaged.Store(&f)
	t.Cleanup(func() { lockdir.TestStaged.Store(nil) })
	l := r.lock()
	mustLock(t, l)
	if swept != 2 {
		t.Fatalf("%d stages made, want 2 (one swept, one renamed into place)", swept)
	}
	if e := parseEntry(r.entryName()); e.holder.Token != l.token {
		t.Fatalf("entry %q is not the creator's", e.name)
	}
	names, _ := fsys.ReadNames(filepath.Dir(r.path))
	if len(names) != 1 {
		t.Fatalf("beside the lock: %q, want nothing", names)
	}
}

func TestEmptyDirectoryReclaimedAfterTimeout(t *testing.T) {
	r := newRig(t)
	os.Mkdir(r.path, 0o755)
	b := r.lock(WithTimeout(2 * time.Second))
	done := r.lockAsync(context.Background(), b)
	r.clk.Add(2*time.Second - time.Nanosecond)
	notYet(t, done, "before TIMEOUT")
	r.clk.Add(time.Nanosecond)
	if err := waitFor(t, done, "reclaim of the empty directory"); err != nil {
		t.Fatal(err)
	}
	if e := parseEntry(r.entryName()); e.holder.Token != b.token {
		t.Fatalf("entry %q is not b's", e.name)
	}
}

// hideEntries makes listings of path miss its state entries while hide
// is set, as listings racing renames do on ext4 and sshfs.
func hideEntries(t *testing.T, path string) *atomic.Bool {
	hide := new(atomic.Bool)
	f := func(p string, names []string) []string {
		if p != path || !hide.Load() {
			return names
		}
		return slices.DeleteFunc(names, lockdir.IsStateName)
	}
	lockdir.TestListing.Store(&f)
	t.Cleanup(func() { lockdir.TestListing.Store(nil) })
	return hide
}

// Listings that miss the state entry (every one, for a while) are an
// unknown holder, not a corrupt lock, even with waiters queued: the first
// waiter looks again at its poll interval, not the long one of a watched
// directory, since no event follows. Only a lock that shows its queue and
// no entry for TIMEOUT is ErrCorrupt, and then nothing in it is touched.
func TestListingsThatMissTheEntry(t *testing.T) {
	const poll = 100 * time.Millisecond
	r := newRig(t)
	hide := hideEntries(t, r.path)
	a, w := r.lock(), r.lock(WithPollInterval(poll), WithTimeout(time.Hour))
	looks := make(chan struct{}, 100)
	w.testStep = func(step string) {
		if step == "look" {
			looks <- struct{}{}
		}
	}
	mustLock(t, a)
	hide.Store(true)
	done := r.lockAsync(context.Background(), w) // it queues and looks again
	for len(looks) > 0 {
		<-looks
	}
	hide.Store(false) // the listings see the entry again; no event says so
	r.clk.Add(poll)
	waitFor(t, looks, "the waiter to look again at its poll interval")
	waitFor(t, hooks[w].blocked, "the waiter to wait for the holder it sees")
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the release to wake the waiter"); err != nil {
		t.Fatal(err)
	}

	// Entries hidden for good: ErrCorrupt after TIMEOUT, nothing touched.
	// (Unwatched: a watch event naming the holder's entry, late under
	// load, is another picture, which restarts the waiter's observation.)
	b := r.lock(WithTimeout(2*time.Second), WithWatch(false))
	hide.Store(true)
	done = r.lockAsync(context.Background(), b)
	r.clk.Add(2*time.Second - time.Nanosecond)
	notYet(t, done, "before TIMEOUT")
	r.clk.Add(time.Nanosecond)
	err := waitFor(t, done, "the waiter to give up on a lock without an entry")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), r.path) {
		t.Fatalf("Lock = %v, want ErrCorrupt naming %s", err, r.path)
	}
	hide.Store(false)
	if e := parseEntry(r.entryName()); e.holder.Token != w.token {
		t.Fatalf("entry %q is not the holder's any more", e.name)
	}
	w.Unlock()
}

// ghostEntries makes listings of path show, while on, the state entry it
// holds and also the old name it was renamed from: what a listing racing
// a rename on a distributed filesystem shows (GlusterFS carries a rename
// out brick by brick).
func ghostEntries(t *testing.T, path string) *atomic.Bool {
	on := new(atomic.Bool)
	f := func(p string, names []string) []string {
		if p != path || !on.Load() {
			return names
		}
		return append(slices.Clone(names), "free.1") // (names may be a pooled buffer)
	}
	lockdir.TestListing.Store(&f)
	t.Cleanup(func() { lockdir.TestListing.Store(nil) })
	return on
}

// Two state entries in listings are an unknown state, never fatal at
// once: a waiter waits and looks again, Inspect says so without an error,
// and only the same two entries shown for all of TIMEOUT are ErrCorrupt,
// with nothing in the lock directory touched.
func TestTwoEntriesInAListingAreLookedAtAgain(t *testing.T) {
	const poll = 100 * time.Millisecond
	r := newRig(t)
	ghost := ghostEntries(t, r.path)
	a, w := r.lock(), r.lock(WithPollInterval(poll), WithTimeout(time.Hour))
	mustLock(t, a)
	ghost.Store(true)
	done := r.lockAsync(context.Background(), w)
	st, err := Inspect(r.path)
	if err != nil || !st.Held || !st.Holder.Unknown || st.Entries != 2 {
		t.Fatalf("Inspect of a directory showing two entries = %+v, %v; want held, unknown holder, 2 entries, no error", st, err)
	}
	if !strings.Contains(st.String(), "2 state entries") {
		t.Errorf("Status %q does not say what it saw", st)
	}
	ghost.Store(false)
	r.clk.Add(poll)
	waitFor(t, hooks[w].blocked, "the waiter to look again and wait for the holder it sees")
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the waiter to acquire once the picture is clear"); err != nil {
		t.Fatal(err)
	}

	// Two entries for good: ErrCorrupt after TIMEOUT, nothing touched.
	// (Unwatched: a watch event naming the holder's entry, late under
	// load, is another picture, which restarts the waiter's observation.)
	b := r.lock(WithTimeout(2*time.Second), WithWatch(false))
	ghost.Store(true)
	done = r.lockAsync(context.Background(), b)
	held := r.entryName()
	r.clk.Add(2*time.Second - time.Nanosecond)
	notYet(t, done, "before TIMEOUT")
	r.clk.Add(time.Nanosecond)
	err = waitFor(t, done, "the waiter to give up on a lock that keeps showing two entries")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), r.path) || !strings.Contains(err.Error(), "2 state entries") {
		t.Fatalf("Lock = %v, want ErrCorrupt naming %s and what it saw", err, r.path)
	}
	ghost.Store(false)
	if n := r.entryName(); n != held {
		t.Fatalf("entry changed from %q to %q", held, n)
	}
	w.Unlock()
}

// An unparseable held entry, or one refreshed "in the future" by a clock
// that runs ahead, is reclaimed after TIMEOUT seen unchanged on the
// waiter's own clock.
func TestUnknownOrFutureHolderReclaimedAfterSeenTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry func(r *rig) string
	}{
		{"garbage", func(r *rig) string { return "held.garbage" }},
		{"future", func(r *rig) string {
			future := r.clk.Now().Add(time.Hour)
			return lockdir.FormatHeld(7, lockdir.NewToken(), 0, future, future, time.Second, lockdir.Identity{PID: 1, HostID: "abc", Host: "elsewhere"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			os.MkdirAll(filepath.Join(r.path, tc.entry(r)), 0o755)
			b := r.lock(WithTimeout(time.Second))
			done := r.lockAsync(context.Background(), b)
			r.clk.Add(time.Second - time.Nanosecond)
			notYet(t, done, "before TIMEOUT")
			r.clk.Add(time.Nanosecond)
			if err := waitFor(t, done, "reclaim"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A holder on this host whose process is gone, or whose pid now belongs to
// another process, is reclaimed at once; a live one is not.
func TestDeadHolderOnThisHostReclaimedAtOnce(t *testing.T) {
	id := lockdir.Self()
	if id.HostID == "0" || id.Start == 0 {
		t.Skip("this OS gives no host identity or process start time")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := id
	dead.PID = cmd.Process.Pid
	reused := id
	reused.Start++
	for _, tc := range []struct {
		name   string
		holder lockdir.Identity
		want   bool
	}{
		{"exited", dead, true},
		{"pid reused", reused, true},
		{"alive", id, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			now := r.clk.Now()
			os.MkdirAll(filepath.Join(r.path, lockdir.FormatHeld(5, lockdir.NewToken(), 0, now, now, time.Hour, tc.holder)), 0o755)
			ok, err := r.lock(WithPatience(0)).TryLock()
			if ok != tc.want || err != nil {
				t.Fatalf("TryLock = %v, %v; want %v", ok, err, tc.want)
			}
			st, err := Inspect(r.path)
			if err != nil || !st.Held {
				t.Fatalf("Inspect = %+v, %v", st, err)
			}
		})
	}
}

// A clock that jumps back while the lock is held does not make the holder
// lose it: the heartbeat writes an earlier time under a new name.
func TestClockJumpBackKeepsLock(t *testing.T) {
	r := newRig(t)
	a, b := r.lock(WithTimeout(3*time.Second)), r.lock()
	mustLock(t, a)
	r.clk.Set(r.clk.Now().Add(-time.Hour))
	a.heartbeat() // the refresh timer is monotonic; the wall clock is not
	waitFor(t, hooks[a].beats, "heartbeat")
	if e := parseEntry(r.entryName()); e.holder.Sequence != 1 || !e.holder.Beat.Equal(r.clk.Now()) {
		t.Fatalf("entry after the jump: %+v", e.holder)
	}
	if ok, err := b.TryLock(); ok || err != nil {
		t.Fatalf("TryLock after the jump = %v, %v", ok, err)
	}
	select {
	case <-a.Lost():
		t.Fatal("lost after the clock jumped back")
	default:
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// A clock that jumps forward past TIMEOUT races the holder's heartbeat
// against a waiter's reclaim. Either may win; never both, and a holder
// that lost is told.
func TestClockJumpForwardNeverTwoHolders(t *testing.T) {
	wins := map[bool]int{}
	for i := 0; i < 50; i++ {
		r := newRig(t)
		a, b := r.lock(WithTimeout(3*time.Second)), r.lock()
		mustLock(t, a)
		pause(a)
		r.clk.Add(10 * time.Second)
		got := make(chan bool, 1)
		go func() {
			ok, err := b.TryLock()
			if err != nil {
				t.Error(err)
			}
			got <- ok
		}()
		a.heartbeat()
		<-hooks[a].beats
		bHolds := waitFor(t, got, "TryLock")
		lost := false
		select {
		case <-a.Lost():
			lost = true
		default:
		}
		owner := parseEntry(r.entryName()).holder.Token
		if bHolds != lost || (bHolds && owner != b.token) || (!bHolds && owner != a.token) {
			t.Fatalf("b holds %v, a lost %v, entry owned by %s (a %s, b %s)", bHolds, lost, owner, a.token, b.token)
		}
		wins[bHolds]++
	}
	t.Logf("reclaims won by the waiter: %d, by the heartbeat: %d", wins[true], wins[false])
}

func TestInspect(t *testing.T) {
	r := newRig(t)
	st, err := Inspect(r.path)
	if err != nil || st.Exists || st.Held {
		t.Fatalf("Inspect of no lock = %+v, %v", st, err)
	}
	a := r.lock(WithTimeout(time.Minute))
	mustLock(t, a)
	r.clk.Add(5 * time.Second) // heartbeat not yet due
	st, err = a.Status()
	if err != nil || !st.Held || st.Holder.PID != os.Getpid() || st.Fence != a.Fence() || st.Age != 5*time.Second || st.Stale || st.Dead {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if s := st.String(); !strings.Contains(s, "held by pid") {
		t.Errorf("Status.String() = %q", s)
	}
	a.Unlock()
	if st, err = Inspect(r.path); err != nil || st.Held || st.Fence != a.Fence() {
		t.Fatalf("Inspect after Unlock = %+v, %v", st, err)
	}
}

func TestBreak(t *testing.T) {
	r := newRig(t)
	a, op := r.lock(WithTimeout(time.Second)), r.lock()
	if st, err := op.Break(false); err != nil || st.Held {
		t.Fatalf("Break of no lock = %+v, %v", st, err)
	}
	mustLock(t, a)
	if _, err := op.Break(false); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("Break of a fresh lock = %v, want ErrBusy naming the holder", err)
	}
	pause(a)
	r.clk.Add(time.Second)
	st, err := op.Break(false)
	if err != nil || !st.Stale || st.Holder.Token != a.token {
		t.Fatalf("Break of a stale lock = %+v, %v", st, err)
	}
	after, _ := op.Status()
	if after.Held || after.Fence != a.Fence()+1 {
		t.Fatalf("after Break: %+v, want free with fence %d", after, a.Fence()+1)
	}
	if err := a.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("broken holder's Unlock = %v, want ErrLost", err)
	}
	mustLock(t, a)
	if _, err := op.Break(true); err != nil {
		t.Fatalf("forced Break = %v", err)
	}
	if err := a.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("Unlock after a forced Break = %v, want ErrLost", err)
	}
}

func validComponent(t *testing.T, name, file string) {
	t.Helper()
	if file == "" || file == "." || file == ".." || len(file) > 200 || strings.ContainsAny(file, "/\\:*?\"<>|\x00 ") ||
		strings.HasSuffix(file, ".") || strings.HasPrefix(file, ".") || strings.ToLower(file) != file && !strings.Contains(file, "%") {
		t.Fatalf("NameToFile(%q) = %q: not a safe file name", name, file)
	}
}

func TestNameToFile(t *testing.T) {
	names := []string{"", ".", "..", "../../etc/passwd", "a/b", "a\\b", "CON", "con", "nul.txt", "Foo", "foo",
		"backup.daily", "trailing.", "trailing", "%41", "A", "~", "日本語", "a b", strings.Repeat("x", 10000),
		strings.Repeat("x", 10000) + "y", strings.Repeat("É", 5000)}
	seen := map[string]string{}
	for _, n := range names {
		f := NameToFile(n)
		validComponent(t, n, f)
		if other, dup := seen[f]; dup {
			t.Fatalf("%q and %q both map to %q", n, other, f)
		}
		seen[f] = n
	}
	if NameToFile("backup.daily") != "n-backup.daily" {
		t.Errorf("a plain name should stay readable: %q", NameToFile("backup.daily"))
	}
}

// FuzzNameToFile: every name maps to a safe file name, and two distinct
// names never map to the same one.
func FuzzNameToFile(f *testing.F) {
	f.Add("a", "A")
	f.Add("x.", "x%2e")
	f.Add(strings.Repeat("ab", 100), strings.Repeat("ab", 100)+"c")
	f.Add("../x", "..%2fx")
	f.Fuzz(func(t *testing.T, a, b string) {
		fa, fb := NameToFile(a), NameToFile(b)
		validComponent(t, a, fa)
		if a != b && fa == fb {
			t.Fatalf("%q and %q both map to %q", a, b, fa)
		}
	})
}

func TestDefaultDirIsPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no Unix modes: DefaultDir is dlock in the user's temporary directory, private by its ACL")
	}
	xdg := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	dir, err := DefaultDir()
	if err != nil || dir != filepath.Join(xdg, "dlock") {
		t.Fatalf("DefaultDir = %q, %v", dir, err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, want 0700", fi.Mode().Perm())
	}
	// A symlink planted where the directory goes is refused, and so is a
	// directory others can write.
	planted := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", planted)
	os.Symlink(t.TempDir(), filepath.Join(planted, "dlock"))
	if _, err := DefaultDir(); err == nil {
		t.Fatal("DefaultDir accepted a planted symlink")
	}
	open := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", open)
	os.Mkdir(filepath.Join(open, "dlock"), 0o777)
	os.Chmod(filepath.Join(open, "dlock"), 0o777)
	if _, err := DefaultDir(); err == nil {
		t.Fatal("DefaultDir accepted a world-writable directory")
	}
	// Without XDG_RUNTIME_DIR: a per-user directory in the temp dir.
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("TMPDIR", xdg)
	if dir, err := DefaultDir(); err != nil || !strings.HasPrefix(filepath.Base(dir), "dlock-") {
		t.Fatalf("DefaultDir without XDG_RUNTIME_DIR = %q, %v", dir, err)
	}
}

func TestNamedLocksExclude(t *testing.T) {
	dir := t.TempDir()
	a, err := Named("../../etc/passwd", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(a.Path()) != dir {
		t.Fatalf("named lock at %s, outside %s", a.Path(), dir)
	}
	b, _ := Named("../../etc/passwd", WithDir(dir))
	c, _ := Named("../../etc/passwd ", WithDir(dir))
	mustLock(t, a)
	if ok, _ := b.TryLock(); ok {
		t.Fatal("two Named locks of one name both held")
	}
	if ok, err := c.TryLock(); !ok || err != nil {
		t.Fatalf("a different name is a different lock: %v, %v", ok, err)
	}
}

func TestTrySingleInstance(t *testing.T) {
	dir := t.TempDir()
	l, err := TrySingleInstance(WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	_, err = TrySingleInstance(WithDir(dir))
	var ar *AlreadyRunningError
	if !errors.As(err, &ar) || !errors.Is(err, ErrBusy) || ar.Holder.PID != os.Getpid() {
		t.Fatalf("second instance: %v", err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if want := "another " + exe + " is already running (pid " + strconv.Itoa(os.Getpid()) + " on "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("message %q, want it to start %q", err, want)
	}
}

func TestSemaphoreAtMostN(t *testing.T) {
	r := newRig(t)
	var sems []*Semaphore
	for range 4 {
		s, err := NewSemaphore(r.path, 3, WithClock(r.clk), WithPollInterval(never), WithTimeout(time.Second), WithMaxClockSkew(0))
		if err != nil {
			t.Fatal(err)
		}
		sems = append(sems, s)
	}
	slots := map[int]bool{}
	for _, s := range sems[:3] {
		if ok, err := s.TryAcquire(); !ok || err != nil {
			t.Fatalf("TryAcquire = %v, %v", ok, err)
		}
		slots[s.Slot()] = true
	}
	if len(slots) != 3 {
		t.Fatalf("three holders share slots: %v", slots)
	}
	if ok, err := sems[3].TryAcquire(); ok || err != nil {
		t.Fatalf("fourth TryAcquire = %v, %v; want false", ok, err)
	}
	if _, err := sems[0].TryAcquire(); !errors.Is(err, ErrHeld) {
		t.Fatalf("TryAcquire while holding = %v, want ErrHeld", err)
	}
	// A waiter is woken by a release.
	done := make(chan error, 1)
	blocked := make(chan struct{}, 10)
	sems[3].testBlocked = func() { blocked <- struct{}{} }
	go func() { done <- sems[3].Acquire(context.Background()) }()
	waitFor(t, blocked, "the waiter to block")
	if err := sems[1].Release(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the waiter to take the released slot"); err != nil {
		t.Fatal(err)
	}
	// A holder that stops refreshing is reclaimed at its TIMEOUT.
	pause(sems[0].slots[sems[0].Slot()])
	w, _ := NewSemaphore(r.path, 3, WithClock(r.clk), WithPollInterval(never), WithPatience(0), WithMaxClockSkew(0))
	r.clk.Add(time.Second - time.Nanosecond)
	if ok, _ := w.TryAcquire(); ok {
		t.Fatal("a slot was reclaimed before TIMEOUT")
	}
	r.clk.Add(time.Nanosecond)
	if ok, err := w.TryAcquire(); !ok || err != nil {
		t.Fatalf("TryAcquire at TIMEOUT = %v, %v", ok, err)
	}
	if err := sems[0].Release(); !errors.Is(err, ErrLost) {
		t.Fatalf("Release of a reclaimed slot = %v, want ErrLost", err)
	}
	// PATIENCE: all slots held (by sems[2], sems[3] and w).
	full, _ := NewSemaphore(r.path, 3, WithPatience(0), WithClock(r.clk))
	if err := full.Acquire(context.Background()); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "all 3 slots") {
		t.Fatalf("Acquire of a full semaphore = %v", err)
	}
	// Another size on the same path is refused.
	other, _ := NewSemaphore(r.path, 4)
	if _, err := other.TryAcquire(); err == nil || !strings.Contains(err.Error(), "size.3") {
		t.Fatalf("a semaphore of another size was accepted: %v", err)
	}
}

func TestRWLock(t *testing.T) {
	r := newRig(t)
	mk := func() *RWLock {
		rw, err := NewRWLock(r.path, WithClock(r.clk), WithPollInterval(never), WithMaxReaders(4), WithTimeout(time.Second), WithMaxClockSkew(0))
		if err != nil {
			t.Fatal(err)
		}
		return rw
	}
	r1, r2, w, r3 := mk(), mk(), mk(), mk()
	for _, rd := range []*RWLock{r1, r2} {
		if ok, err := rd.TryRLock(); !ok || err != nil {
			t.Fatalf("TryRLock = %v, %v", ok, err)
		}
	}
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock with readers in = %v, %v", ok, err)
	}
	// A writer waiting for readers keeps new readers out.
	blocked := make(chan struct{}, 10)
	w.testBlocked = func() { blocked <- struct{}{} }
	done := make(chan error, 1)
	go func() { done <- w.Lock(context.Background()) }()
	waitFor(t, blocked, "the writer to wait for readers")
	if ok, err := r3.TryRLock(); ok || err != nil {
		t.Fatalf("a new reader got in while a writer waits: %v, %v", ok, err)
	}
	r1.RUnlock()
	notYet(t, done, "one reader still in")
	r2.RUnlock()
	if err := waitFor(t, done, "the writer after the readers left"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r3.TryRLock(); ok {
		t.Fatal("a reader got in with a writer")
	}
	if err := r3.RUnlock(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("RUnlock without a read hold = %v", err)
	}
	if err := w.Unlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := r3.TryRLock(); !ok || err != nil {
		t.Fatalf("TryRLock after the writer left = %v, %v", ok, err)
	}
	// A reader that stops refreshing is reclaimed at TIMEOUT, and a writer
	// gets in.
	pause(r3.readers.slots[r3.reads[0].slot])
	w2 := mk()
	r.clk.Add(time.Second)
	if ok, err := w2.TryLock(); !ok || err != nil {
		t.Fatalf("writer after a stale reader = %v, %v", ok, err)
	}
	if err := r3.RUnlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("stale reader's RUnlock = %v, want ErrLost", err)
	}
	w2.Unlock()
}

// BenchmarkLockUnlock measures one uncontended Lock+Unlock against the
// floor the protocol cannot go below (two renames of an entry), on the
// temporary directory and on /dev/shm where it exists.
// An uncontended Lock and Unlock allocate what they must and no more:
// the held entry's name and token, the acquisition's Lost channel and its
// timers. A closure or a boxed value on this path shows here first (the
// restructuring into internal/lockdir added three, once).
func TestLockUnlockAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	l, err := New(filepath.Join(t.TempDir(), "lock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		if err := l.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	const want = 6
	if runtime.GOOS != "linux" {
		t.Skipf("Lock+Unlock: %v allocations; the allocation-free path (statx + renameat2) is Linux's", allocs)
	}
	if allocs > want {
		t.Fatalf("Lock+Unlock allocates %v times, want at most %d", allocs, want)
	}
	t.Logf("Lock+Unlock: %v allocations", allocs)
}

func BenchmarkLockUnlock(b *testing.B) {
	dirs := map[string]string{"tmp": b.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, _ := os.MkdirTemp("/dev/shm", "dlock-bench")
		defer os.RemoveAll(d)
		dirs["shm"] = d
	}
	for name, dir := range dirs {
		b.Run(name+"/dlock", func(b *testing.B) {
			l, _ := New(filepath.Join(dir, "lock"))
			ctx := context.Background()
			for b.Loop() {
				if err := l.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/floor-2renames", func(b *testing.B) {
			p := filepath.Join(dir, "floor")
			os.MkdirAll(filepath.Join(p, "a"), 0o755)
			a, c := filepath.Join(p, "a"), filepath.Join(p, "b")
			for b.Loop() {
				os.Rename(a, c)
				os.Rename(c, a)
			}
		})
	}
}

// With watching off a release does not wake the waiter: the next poll does.
func TestWithWatchOffPolls(t *testing.T) {
	r := newRig(t)
	a := r.lock()
	b := r.lock(WithWatch(false), WithPollInterval(time.Second))
	mustLock(t, a)
	done := r.lockAsync(context.Background(), b)
	a.Unlock()
	notYet(t, done, "before the poll")
	r.clk.Add(time.Second)
	if err := waitFor(t, done, "the poll to find the lock free"); err != nil {
		t.Fatal(err)
	}
}

// Values made without their constructors say so instead of panicking.
func TestZeroValuesSaySo(t *testing.T) {
	var l Lock
	var s Semaphore
	var rw RWLock
	ctx := context.Background()
	for name, err := range map[string]error{
		"Lock.Lock":       l.Lock(ctx),
		"Lock.TryLock":    second(l.TryLock()),
		"Lock.Status":     second(l.Status()),
		"Lock.Break":      second(l.Break(false)),
		"Semaphore.Take":  second(s.Take(ctx)),
		"Semaphore.Do":    s.Do(ctx, func(context.Context) error { return nil }),
		"Semaphore.Lock":  s.Lock(ctx),
		"RWLock.Lock":     rw.Lock(ctx),
		"RWLock.RLock":    rw.RLock(ctx),
		"RWLock.TryRLock": second(rw.TryRLock()),
		"RWLock.TryLock":  second(rw.TryLock()),
	} {
		if err == nil || !strings.Contains(err.Error(), "zero") || !strings.Contains(err.Error(), "dlock.New") {
			t.Errorf("%s on a zero value = %v, want an error naming its constructor", name, err)
		}
	}
	if err := l.Unlock(); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Unlock of a zero Lock = %v, want ErrNotHeld", err)
	}
}

func second[T any](_ T, err error) error { return err }

// An option for another kind of lock is an error, naming the option and
// the kind, rather than silently ignored.
func TestOptionsForAnotherKindAreRefused(t *testing.T) {
	dir := t.TempDir()
	for name, err := range map[string]error{
		"New WithDir":                 second(New(filepath.Join(dir, "l"), WithDir(dir))),
		"New WithMaxReaders":          second(New(filepath.Join(dir, "l"), WithMaxReaders(4))),
		"NewSemaphore WithMaxReaders": second(NewSemaphore(filepath.Join(dir, "s"), 2, WithMaxReaders(4))),
		"NewSemaphore WithDir":        second(NewSemaphore(filepath.Join(dir, "s"), 2, WithDir(dir))),
		"NewRWLock WithDir":           second(NewRWLock(filepath.Join(dir, "rw"), WithDir(dir))),
		"Named WithMaxReaders":        second(Named("job", WithDir(dir), WithMaxReaders(4))),
	} {
		if err == nil || !strings.Contains(err.Error(), "With") {
			t.Errorf("%s = %v, want an error naming the option", name, err)
		}
	}
	if _, err := Named("job", WithDir(dir)); err != nil {
		t.Errorf("Named with WithDir = %v", err)
	}
	if _, err := NewRWLock(filepath.Join(dir, "rw"), WithMaxReaders(4)); err != nil {
		t.Errorf("NewRWLock with WithMaxReaders = %v", err)
	}
}

// One Semaphore value serves many goroutines: each Take holds a slot of
// its own; the one past n waits, and gets the slot a release frees.
func TestSemaphoreSharedByGoroutines(t *testing.T) {
	r := newRig(t)
	s, err := NewSemaphore(r.path, 3, WithClock(r.clk), WithPollInterval(never), WithMaxClockSkew(0))
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan struct{}, 10)
	s.testBlocked = func() { blocked <- struct{}{} }
	leases := make(chan *Lease, 3)
	for range 3 {
		go func() {
			p, err := s.Take(context.Background())
			if err != nil {
				t.Error(err)
			}
			leases <- p
		}()
	}
	slots := map[int]bool{}
	var held []*Lease
	for range 3 {
		p := waitFor(t, leases, "a Take")
		slots[p.Slot()] = true
		held = append(held, p)
	}
	if len(slots) != 3 {
		t.Fatalf("three Takes hold slots %v, want three distinct", slots)
	}
	if p, err := s.TryTake(); p != nil || err != nil {
		t.Fatalf("TryTake with all slots held = %v, %v", p, err)
	}
	fourth := make(chan *Lease, 1)
	go func() {
		p, err := s.Take(context.Background())
		if err != nil {
			t.Error(err)
		}
		fourth <- p
	}()
	waitFor(t, blocked, "the fourth Take to wait")
	freed := held[1].Slot()
	if err := held[1].Release(); err != nil {
		t.Fatal(err)
	}
	if p := waitFor(t, fourth, "the fourth Take after a release"); p.Slot() != freed {
		t.Fatalf("the fourth Take got slot %d, want the freed %d", p.Slot(), freed)
	}
	if err := held[1].Release(); !errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), "semaphore") {
		t.Fatalf("a second Release of one lease = %v, want ErrNotHeld naming the semaphore", err)
	}
}

// One RWLock value serves many goroutines: its readers overlap, and its
// writer waits for them as for anyone's.
func TestRWLockSharedByGoroutines(t *testing.T) {
	r := newRig(t)
	rw, err := NewRWLock(r.path, WithClock(r.clk), WithPollInterval(never), WithMaxReaders(4), WithMaxClockSkew(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if ok, err := rw.TryRLock(); !ok || err != nil {
			t.Fatalf("reader %d of one value: TryRLock = %v, %v", i, ok, err)
		}
	}
	if ok, err := rw.TryLock(); ok || err != nil {
		t.Fatalf("TryLock with the value's own readers in = %v, %v", ok, err)
	}
	blocked := make(chan struct{}, 10)
	rw.testBlocked = func() { blocked <- struct{}{} }
	done := make(chan error, 1)
	go func() { done <- rw.Lock(context.Background()) }()
	waitFor(t, blocked, "the writer to wait for the value's readers")
	for i := range 3 {
		notYet(t, done, "readers still in")
		if err := rw.RUnlock(); err != nil {
			t.Fatalf("RUnlock %d: %v", i, err)
		}
	}
	if err := waitFor(t, done, "the writer after the value's readers left"); err != nil {
		t.Fatal(err)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// An empty lock directory made by hand (mkdir -m 0777, for several users)
// is an unknown holder, removed after TIMEOUT unchanged; the lock made in
// its place keeps its mode, not the default 0755.
func TestHandMadeLockDirectoryKeepsItsMode(t *testing.T) {
	r := newRig(t)
	if err := os.Mkdir(r.path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(r.path, 0o777); err != nil {
		t.Fatal(err)
	}
	l := r.lock(WithTimeout(time.Second))
	done := r.lockAsync(context.Background(), l)
	r.clk.Add(time.Second)
	if err := waitFor(t, done, "the lock after TIMEOUT of an empty directory"); err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	fi, err := os.Stat(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 {
		t.Fatalf("the lock made in place of a 0777 directory has mode %v, want 0777", fi.Mode().Perm())
	}
}

// An RDo's reader slot is its own: an RUnlock by another goroutine of the
// same value releases that goroutine's RLock, never the running RDo's.
func TestRUnlockNeverReleasesAnRDo(t *testing.T) {
	r := newRig(t)
	mk := func() *RWLock {
		rw, err := NewRWLock(r.path, WithClock(r.clk), WithPollInterval(never), WithMaxReaders(2), WithMaxClockSkew(0))
		if err != nil {
			t.Fatal(err)
		}
		return rw
	}
	rw, writer := mk(), mk()
	if ok, err := rw.TryRLock(); !ok || err != nil {
		t.Fatalf("TryRLock = %v, %v", ok, err)
	}
	inside, leave, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- rw.RDo(context.Background(), func(context.Context) error {
			close(inside)
			<-leave
			return nil
		})
	}()
	waitFor(t, inside, "the RDo's function")
	if err := rw.RUnlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := writer.TryLock(); ok || err != nil {
		t.Fatalf("a writer's TryLock while an RDo runs = %v, %v: its reader slot was released", ok, err)
	}
	close(leave)
	if err := waitFor(t, done, "the RDo"); err != nil {
		t.Fatal(err)
	}
	if ok, err := writer.TryLock(); !ok || err != nil {
		t.Fatalf("the writer's TryLock after the readers left = %v, %v", ok, err)
	}
	writer.Unlock()
}

// The errors the internal packages make match the public sentinels:
// lockdir's about lock directories, fsys's about filesystems where no lock
// can be safe.
func TestInternalErrorsMatchTheSentinels(t *testing.T) {
	for _, c := range []struct {
		inner, public error
	}{
		{lockdir.ErrNotLock, ErrNotLock},
		{lockdir.ErrCorrupt, ErrCorrupt},
		{fsys.ErrUnsafe, ErrUnsafeFS},
	} {
		if err := fmt.Errorf("dlock: somewhere: %w", c.inner); !errors.Is(err, c.public) {
			t.Errorf("an error wrapping %q does not match %q", c.inner, c.public)
		}
	}
}
