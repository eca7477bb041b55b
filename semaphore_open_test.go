package dlock

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
