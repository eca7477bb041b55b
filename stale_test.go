package dlock

// When a holder is stale (stale.go): at its TIMEOUT as seen, never early
// for a pause or a clock that jumps, at once for a dead holder here.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
)

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
