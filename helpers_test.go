package dlock

// Helpers shared by the tests of several files: the mock-clock rig (a
// clock and a lock path), and waiting for what the code under test says
// through its test hooks.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/watch"
	"github.com/lockdir/dlock/internal/wine"
)

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
	return &rig{t: t, clk: clk, path: filepath.Join(tempDir(t), "lock")}
}

// tempDir is t.TempDir, whose removal under Wine waits for this process's
// own handles to close. A waiter that acquired leaves its queue and closes
// its watch in the background (Lock returns once the lock is held); until
// then, under Wine 8, which has no POSIX delete semantics, what it still
// holds open stays delete-pending, still listed, and t.TempDir's cleanup
// failed with "Directory is not empty" (TestReleaseWakesWaiter, about one
// run in three). Everywhere else this is t.TempDir.
func tempDir(t *testing.T) string {
	dir := t.TempDir()
	if _, ok := wine.Version(); ok {
		t.Cleanup(func() { // before t.TempDir's own, which then finds it gone
			for end := time.Now().Add(10 * time.Second); os.RemoveAll(dir) != nil && time.Now().Before(end); {
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return dir
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

// watchersOf counts the waits of this process that watch path.
func watchersOf(path string) int { return watch.Subscribers(path) }

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
