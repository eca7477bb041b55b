package dlock

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
)

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
	// Handed to the waiters' queue (free.E.q): free, of the same fence,
	// and nothing to break.
	free := filepath.Join(r.path, lockdir.FreeName(a.Fence()))
	if err := os.Rename(free, filepath.Join(r.path, lockdir.QueuedFreeName(a.Fence()))); err != nil {
		t.Fatal(err)
	}
	if st, err = Inspect(r.path); err != nil || st.Held || st.Fence != a.Fence() || !strings.Contains(st.String(), "free") {
		t.Fatalf("Inspect of a lock handed to the queue = %+v (%s), %v", st, st, err)
	}
	if st, err := r.lock().Break(true); err != nil || st.Held {
		t.Fatalf("Break of a lock handed to the queue = %+v, %v", st, err)
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

// A forced break that a refresh of the live holder falls into, between
// its look and its take (the holder renames its entry and keeps its
// token), looks again and breaks: it is the same holder.
func TestBreakAcrossARefresh(t *testing.T) {
	r := newRig(t)
	a, op := r.lock(WithTimeout(time.Minute)), r.lock()
	mustLock(t, a)
	refreshes := 0
	op.testStep = func(step string) {
		if step == "break-looked" && refreshes == 0 {
			refreshes++
			a.op.Lock()
			err := a.refresh(r.clk.Now())
			a.op.Unlock()
			if err != nil {
				t.Errorf("the holder's refresh: %v", err)
			}
		}
	}
	st, err := op.Break(true)
	if refreshes != 1 {
		t.Fatalf("the holder refreshed %d times between the break's look and its take, want 1", refreshes)
	}
	if err != nil || !st.Held || st.Holder.Token != a.token {
		t.Fatalf("forced Break across a refresh = %+v, %v; want the holder's status and no error", st, err)
	}
	if err := a.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("broken holder's Unlock = %v, want ErrLost", err)
	}
}
