package dlock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
)

// The tests in this file are deterministic: all time comes from a mock
// clock, and a test advances it only once the code under test has said
// (through the test hooks) that it is blocked or has finished a heartbeat.

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
