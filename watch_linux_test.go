package dlock

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	inotifySubscribers = func(h hub, path string) int {
		ih, ok := h.(*inotifyHub)
		if !ok {
			return 0
		}
		ih.mu.Lock()
		defer ih.mu.Unlock()
		if ih.f == nil {
			return 0
		}
		// The same mask again: the kernel hands back path's descriptor
		// and changes nothing (or watches it anew, which is undone).
		wd, err := unix.InotifyAddWatch(ih.fd, path, maskFor(path))
		if err != nil {
			return 0
		}
		subs, ok := ih.subs[int32(wd)]
		if !ok {
			unix.InotifyRmWatch(ih.fd, uint32(wd))
		}
		return len(subs)
	}
}

// A waiter behind others that is woken again and again without looking
// (here: closes of its predecessor's ticket, as a directory scanner
// makes) still polls on time: a wake-up may bring its poll forward,
// never put it off. The second in line polls every second (mock clock);
// woken every 100 ms, it must still look within the second.
func TestWakeUpsDoNotPutOffThePoll(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	a, w1 := r.lock(), r.lock()
	w2 := r.lock(WithPollInterval(time.Second))
	looks := make(chan struct{}, 100)
	w2.testStep = func(step string) {
		if step == "look" {
			looks <- struct{}{}
		}
	}
	mustLock(t, a)
	done1 := r.lockAsync(ctx, w1)
	r.clk.Add(time.Nanosecond) // tickets sort by the time they were taken
	done2 := r.lockAsync(ctx, w2)
	t.Cleanup(func() { cancel(); <-done1; <-done2 })
	for len(looks) > 0 {
		<-looks
	}
	names, _ := readNames(filepath.Join(r.path, queueDir))
	slices.Sort(names)
	if len(names) != 2 {
		t.Fatalf("queue holds %q, want two tickets", names)
	}
	pred := filepath.Join(r.path, queueDir, names[0])
	for range 9 {
		r.clk.Add(100 * time.Millisecond)
		f, err := os.Open(pred)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		select {
		case <-looks:
			return // it polled on time
		case <-hooks[w2].blocked: // it took in the close (or a timer) and waits again
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter never took in the close")
		}
	}
	r.clk.Add(100 * time.Millisecond)
	waitFor(t, looks, "the waiter to poll within its interval")
}

// A wait watching two directories, one not made yet, keeps the watch of
// the other while it tries again for the missing one: an event it has
// heard (a release it waits for) is not thrown away. Dropping every
// watch to subscribe afresh lost it, and a writer of an RWLock waiting
// for its last reader slept forever (TestRWLock's flake under load).
func TestWatchKeepsWatchedPathsWhileOthersAreMissing(t *testing.T) {
	dir := t.TempDir()
	here, later := filepath.Join(dir, "here"), filepath.Join(dir, "later")
	if err := os.Mkdir(here, 0o755); err != nil {
		t.Fatal(err)
	}
	var w watch
	defer w.close()
	paths := []string{here, later}
	if w.set(paths) {
		t.Fatal("a missing directory counted as watched")
	}
	if err := os.Mkdir(filepath.Join(here, "free.1"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w.events(), "the event of the watched directory")
	w.notify("", false) // (put the signal back, as if not yet taken)
	if all, added := w.update(paths); all || added {
		t.Fatalf("update with the directory still missing = %v, %v", all, added)
	}
	select {
	case <-w.events():
	default:
		t.Fatal("trying again for the missing directory threw away what the watched one said")
	}
	if err := os.Mkdir(later, 0o755); err != nil {
		t.Fatal(err)
	}
	if all, added := w.update(paths); !all || !added {
		t.Fatalf("update once both exist = %v, %v; want both watched, one newly", all, added)
	}
	if err := os.Mkdir(filepath.Join(here, "free.2"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w.events(), "an event of the directory watched all along")
}
