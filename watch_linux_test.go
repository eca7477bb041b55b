package dlock

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

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
	names, _ := fsys.ReadNames(filepath.Join(r.path, lockdir.QueueDir))
	slices.Sort(names)
	if len(names) != 2 {
		t.Fatalf("queue holds %q, want two tickets", names)
	}
	pred := filepath.Join(r.path, lockdir.QueueDir, names[0])
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
