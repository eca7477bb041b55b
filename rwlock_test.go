package dlock

import (
	"context"
	"errors"
	"testing"
	"time"
)

// rwMaker makes RWLocks of r's path with readers slots, on r's clock,
// each as another process's.
func rwMaker(t *testing.T, r *rig, readers int) func() *RWLock {
	return func() *RWLock {
		rw, err := NewRWLock(r.path, WithClock(r.clk), WithPollInterval(never), WithMaxReaders(readers), WithTimeout(time.Second), WithMaxClockSkew(0))
		if err != nil {
			t.Fatal(err)
		}
		return rw
	}
}

func TestRWLock(t *testing.T) {
	r := newRig(t)
	mk := rwMaker(t, r, 4)
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

// A writer's first attempt takes every free slot at once; when a reader
// holds one, TryLock gives back all it took, and Lock keeps them while it
// waits, then takes the last as the reader leaves.
func TestRWLockWriterTakesFreeSlotsAtOnce(t *testing.T) {
	r := newRig(t)
	mk := rwMaker(t, r, 8)
	rd, w := mk(), mk()
	if ok, err := rd.TryRLock(); !ok || err != nil {
		t.Fatalf("TryRLock = %v, %v", ok, err)
	}
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock with a reader in = %v, %v", ok, err)
	}
	// Every slot but the reader's was given back: seven more readers fit.
	var others []*RWLock
	for i := range 7 {
		o := mk()
		if ok, err := o.TryRLock(); !ok || err != nil {
			t.Fatalf("reader %d after a failed TryLock = %v, %v: the writer kept a slot", i+2, ok, err)
		}
		others = append(others, o)
	}
	for _, o := range others {
		if err := o.RUnlock(); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan struct{}, 10)
	w.testBlocked = func() { blocked <- struct{}{} }
	done := make(chan error, 1)
	go func() { done <- w.Lock(context.Background()) }()
	waitFor(t, blocked, "the writer to wait for the reader")
	w.mu.Lock()
	held := len(w.wslots)
	w.mu.Unlock()
	if held != 7 {
		t.Fatalf("a writer waiting for one reader holds %d slots, want the 7 free ones", held)
	}
	rd.RUnlock()
	if err := waitFor(t, done, "the writer after the reader left"); err != nil {
		t.Fatal(err)
	}
	if err := w.Unlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := rd.TryRLock(); !ok || err != nil {
		t.Fatalf("TryRLock after the writer left = %v, %v", ok, err)
	}
}
