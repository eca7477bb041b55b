package dlock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

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
	// Another size on the same path is refused, at open.
	if _, err := NewSemaphore(r.path, 4); err == nil || !strings.Contains(err.Error(), "size 3, not 4") {
		t.Fatalf("a semaphore of another size was accepted: %v", err)
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

// Opening a semaphore with another size than it was made with is an
// error at once, not at the first Acquire.
func TestNewSemaphoreOtherSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sem")
	s, err := NewSemaphore(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryAcquire(); !ok || err != nil {
		t.Fatalf("TryAcquire: %v, %v", ok, err)
	}
	defer s.Release()
	if _, err := NewSemaphore(path, 3); err == nil || !strings.Contains(err.Error(), "size 2, not 3") {
		t.Fatalf("NewSemaphore with size 3 on a size-2 semaphore: %v", err)
	}
	if _, err := NewSemaphore(path, 2); err != nil {
		t.Fatalf("NewSemaphore with the same size: %v", err)
	}
	rw := filepath.Join(t.TempDir(), "rw")
	r, _ := NewRWLock(rw, WithMaxReaders(4))
	if ok, err := r.TryRLock(); !ok || err != nil {
		t.Fatalf("TryRLock: %v, %v", ok, err)
	}
	defer r.RUnlock()
	if _, err := NewRWLock(rw); err == nil || !strings.Contains(err.Error(), "rwlock 4, not 32") {
		t.Fatalf("NewRWLock with the default readers on a 4-reader lock: %v", err)
	}
}

// Do, the helper every Locker user calls, on one Semaphore (or RLocker)
// shared by goroutines: each call holds a slot of its own.
func TestDoOnASharedSemaphore(t *testing.T) {
	s, err := NewSemaphore(filepath.Join(t.TempDir(), "sem"), 2, WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	rw, _ := NewRWLock(filepath.Join(t.TempDir(), "rw"), WithPollInterval(time.Millisecond))
	for _, l := range []Locker{s, rw.RLocker()} {
		var in, most atomic.Int32
		var wg sync.WaitGroup
		var failed atomic.Int32
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					err := Do(context.Background(), l, func(ctx context.Context) error {
						n := in.Add(1)
						for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
						}
						time.Sleep(time.Millisecond)
						in.Add(-1)
						return nil
					})
					if err != nil {
						failed.Add(1)
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("%T: %d of 40 calls failed", l, failed.Load())
		}
		if _, ok := l.(*Semaphore); ok && most.Load() > 2 {
			t.Fatalf("%d holders at once in a semaphore of 2", most.Load())
		}
	}
}
