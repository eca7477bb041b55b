package dlock

// Windows' own ways of failing a rename or a listing, injected at
// internal/fsys's contract (fsys.Fault): an antivirus, an indexer, a
// backup or a waiter's own handle has the entry or the lock directory
// open (a sharing violation, "Access is denied"), or the name is
// delete-pending. Each is a refusal that passes: retried within PATIENCE,
// never fatal, never taken for a busy lock or a lost one. These tests run
// on every OS; on Windows the fault is the OS's real error value, which
// fsys must classify (refusals_windows_test.go).

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
)

// refuse makes fsys refuse op on paths for which match is true with
// refusal, n times (n < 0: until the returned stop is called).
func refuse(t *testing.T, op string, match func(path string) bool, refusal error, n int64) (stop func(), count *atomic.Int64) {
	t.Helper()
	var left, seen atomic.Int64
	left.Store(n)
	f := func(o, path string) error {
		if o != op || !match(path) {
			return nil
		}
		if left.Load() == 0 {
			return nil
		}
		left.Add(-1)
		seen.Add(1)
		return refusal // as the OS gives it: fsys classifies it
	}
	if fsys.Fault.Swap(&f) != nil {
		t.Fatal("two faults at once")
	}
	stop = func() { left.Store(0) }
	t.Cleanup(func() { fsys.Fault.Store(nil) })
	return stop, &seen
}

// The plain OS error, for the fault: on Windows the real errno, which is
// what fsys's contract calls see (not already a RefusedError).
func osRefusal(op string, match func(string) bool, refusal error, n int64) func(o, p string) error {
	var left atomic.Int64
	left.Store(n)
	return func(o, p string) error {
		if o != op || !match(p) || left.Load() == 0 {
			return nil
		}
		left.Add(-1)
		return refusal
	}
}

func inLock(path string) func(string) bool {
	return func(p string) bool { return p == path || filepath.Dir(p) == path }
}

// An acquisition refused (rename or listing) for longer than fsys's own
// retries waits it out and acquires once the other program lets go; it
// never answers busy, lost or a fatal error.
func TestRefusalIsWaitedOut(t *testing.T) {
	for _, op := range []string{"rename", "list"} {
		for i, refusal := range refusals {
			t.Run(fmt.Sprintf("%s/%d", op, i), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "lock")
				prime, _ := New(path)
				if err := prime.Lock(context.Background()); err != nil { // the lock exists, free
					t.Fatal(err)
				}
				if err := prime.Unlock(); err != nil {
					t.Fatal(err)
				}
				// 30 refusals in a row: more than fsys retries in one call.
				f := osRefusal(op, inLock(path), refusal, 30)
				fsys.Fault.Store(&f)
				t.Cleanup(func() { fsys.Fault.Store(nil) })
				l, _ := New(path, WithPatience(20*time.Second), WithPollInterval(20*time.Millisecond))
				start := time.Now()
				if err := l.Lock(context.Background()); err != nil {
					t.Fatalf("Lock = %v, want the refusal waited out", err)
				}
				t.Logf("%s refused 30 times (%v): acquired after %v", op, refusal, time.Since(start).Round(time.Millisecond))
				if err := l.Unlock(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// A refusal that lasts: TryLock (no PATIENCE) answers with it at once,
// and Lock when PATIENCE ends; neither is ErrBusy, and the error says
// what happened in the user's words.
func TestLastingRefusalIsNotBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	prime, _ := New(path)
	if err := prime.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	prime.Unlock()
	refuse(t, "rename", inLock(path), refusals[0], -1)
	l, _ := New(path, WithPatience(time.Second), WithPollInterval(50*time.Millisecond))
	ok, err := l.TryLock()
	if ok || !errors.Is(err, fsys.ErrTransient) || errors.Is(err, ErrBusy) {
		t.Fatalf("TryLock = %v, %v; want the refusal, not busy", ok, err)
	}
	start := time.Now()
	err = l.Lock(context.Background())
	took := time.Since(start)
	if !errors.Is(err, fsys.ErrTransient) || errors.Is(err, ErrBusy) || errors.Is(err, ErrLost) {
		t.Fatalf("Lock = %v; want the refusal after PATIENCE, not busy or lost", err)
	}
	if !strings.Contains(err.Error(), "PATIENCE") || !strings.Contains(err.Error(), "another program") {
		t.Errorf("error %q does not say what happened", err)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("Lock gave up after %v, want PATIENCE (1s)", took)
	}
}

// A holder whose refreshes are refused for a while keeps its lock (the
// refusal passes before its deadline): not lost, and refreshed once the
// other program lets go. A release refused for a moment still releases.
func TestHolderRidesOutRefusals(t *testing.T) {
	for i, refusal := range refusals {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			r := newRig(t)
			a := r.lock(WithTimeout(3 * time.Second))
			mustLock(t, a)
			lost := a.Lost()
			stop, seen := refuse(t, "rename", inLock(r.path), refusal, -1)
			r.clk.Add(time.Second) // a heartbeat, refused
			waitFor(t, hooks[a].beats, "the refused heartbeat")
			if seen.Load() == 0 {
				t.Fatal("the heartbeat's rename was not refused")
			}
			select {
			case <-lost:
				t.Fatal("a refused refresh lost the lock")
			default:
			}
			stop()
			before := r.entryName()
			for range 2 { // the retry (before the deadline at 2.4 s), then the next refresh
				r.clk.Add(time.Second)
				waitFor(t, hooks[a].beats, "a heartbeat after the refusal")
			}
			if r.entryName() == before {
				t.Fatal("no refresh succeeded once the refusal passed")
			}
			select {
			case <-lost:
				t.Fatal("the lock was lost although the refusal passed before its deadline")
			default:
			}
			// A release refused 30 times, more than fsys's own retries in
			// one call: retried until it is done, before the deadline.
			f := osRefusal("rename", inLock(r.path), refusal, 30)
			fsys.Fault.Store(&f)
			if err := a.Unlock(); err != nil {
				t.Fatalf("Unlock with a refusal of a second = %v", err)
			}
			if st, err := Inspect(r.path); err != nil || st.Held {
				t.Fatalf("after Unlock: %v, %v; want the lock free", st, err)
			}
		})
	}
}

// A semaphore's slot and a reader/writer lock's read side, their first
// attempt refused for longer than fsys's own retries: waited out too.
func TestRefusalIsWaitedOutBySemaphoreAndRWLock(t *testing.T) {
	under := func(dir string) func(string) bool {
		return func(p string) bool { return strings.HasPrefix(p, dir) }
	}
	t.Run("semaphore", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sem")
		s, err := NewSemaphore(path, 2, WithPatience(20*time.Second), WithPollInterval(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Acquire(context.Background()); err != nil { // made, then free again
			t.Fatal(err)
		}
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
		f := osRefusal("rename", under(path), refusals[1], 30)
		fsys.Fault.Store(&f)
		t.Cleanup(func() { fsys.Fault.Store(nil) })
		if err := s.Acquire(context.Background()); err != nil {
			t.Fatalf("Acquire = %v, want the refusal waited out", err)
		}
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("rwlock", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "rw")
		rw, err := NewRWLock(path, WithPatience(20*time.Second), WithPollInterval(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if err := rw.RLock(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := rw.RUnlock(); err != nil {
			t.Fatal(err)
		}
		f := osRefusal("list", under(path), refusals[2], 30)
		fsys.Fault.Store(&f)
		t.Cleanup(func() { fsys.Fault.Store(nil) })
		if err := rw.RLock(context.Background()); err != nil {
			t.Fatalf("RLock = %v, want the refusal waited out", err)
		}
		if err := rw.RUnlock(); err != nil {
			t.Fatal(err)
		}
	})
}
