package dlock

// What one attempt does with what it finds (attempt.go): the lock created,
// foreign files, stages, an empty directory, listings that miss or
// double the entry; and when a holder is stale: at its TIMEOUT as seen,
// never early for a pause or a clock that jumps, at once for a dead
// holder here.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/wine"
)

// A lock path too long for the transitions' stack buffer (Linux) takes
// the portable system calls, with the same results: a full cycle, a wait
// woken by a release, and a loss told at Unlock.
func TestLongPathTakesPortableCalls(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 200), strings.Repeat("e", 200))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	r.path = filepath.Join(dir, "lock")
	a, b := r.lock(), r.lock()
	mustLock(t, a)
	done := r.lockAsync(context.Background(), b)
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the waiter"); err != nil {
		t.Fatal(err)
	}
	if b.Fence() != a.Fence()+1 {
		t.Fatalf("fences %d then %d", a.Fence(), b.Fence())
	}
	// Taken from under b: its Unlock is ErrLost and leaves the entry be.
	name := r.entryName()
	next := strings.Replace(name, "held."+strconv.FormatUint(b.Fence(), 10)+".", "held."+strconv.FormatUint(b.Fence()+1, 10)+".", 1)
	if err := os.Rename(filepath.Join(r.path, name), filepath.Join(r.path, next)); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("Unlock after the entry was taken = %v, want ErrLost", err)
	}
	if got := r.entryName(); got != next {
		t.Fatalf("entry %s after a late Unlock, want %s untouched", got, next)
	}
}

func TestBadPathsFailAtOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("precious"), 0o644)
	target := filepath.Join(dir, "target")
	os.Mkdir(target, 0o755)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	foreign := filepath.Join(dir, "foreign")
	os.Mkdir(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "data"), []byte("precious"), 0o644)

	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"regular file", file, ErrNotLock},
		{"symlink", link, ErrNotLock},
		{"foreign directory", foreign, ErrNotLock},
		{"missing parent", filepath.Join(dir, "no", "such", "lock"), fs.ErrNotExist},
		{"parent is a file", filepath.Join(file, "lock"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if why := wine.Skip("Wine 8's CreateSymbolicLink reports success and makes nothing"); why != "" && tc.name == "symlink" {
				t.Skip(why)
			}
			l, err := New(tc.path) // no PATIENCE limit: it must not wait
			if err != nil {
				t.Fatal(err)
			}
			err = l.Lock(context.Background())
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Lock = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.path) && !strings.Contains(err.Error(), filepath.Dir(tc.path)) {
				t.Errorf("error %q does not name the path", err)
			}
			if _, err := Inspect(tc.path); err == nil && tc.want != fs.ErrNotExist && tc.want != nil {
				t.Errorf("Inspect accepted %s", tc.name)
			}
		})
	}
	// Nothing was touched.
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Error("the file changed")
	}
	if b, _ := os.ReadFile(filepath.Join(foreign, "data")); string(b) != "precious" {
		t.Error("the foreign directory changed")
	}
	if names, _ := fsys.ReadNames(target); len(names) != 0 {
		t.Errorf("the symlink's target gained %q", names)
	}
	if _, err := os.Lstat(filepath.Join(dir, "no")); err == nil {
		t.Error("a missing parent was created")
	}
}

// Foreign files beside a valid entry are left alone and do not stop the lock.
func TestForeignFilesBesideEntryAreIgnored(t *testing.T) {
	r := newRig(t)
	a := r.lock()
	mustLock(t, a)
	a.Unlock()
	junk := filepath.Join(r.path, "README")
	os.WriteFile(junk, []byte("note"), 0o644)
	mustLock(t, a)
	a.Unlock()
	if b, err := os.ReadFile(junk); err != nil || string(b) != "note" {
		t.Fatal("a foreign file in the lock directory was touched")
	}
}

// A creator killed between making its staging directory and renaming it
// into place leaves the stage beside the lock; whoever creates the lock
// next removes it, once it is older than TIMEOUT. Anything else named like
// a stage is left exactly as it was: a fresh stage (its creator may be
// only slow), one holding other things, a file, a symlink, another lock's.
func TestCreatorSweepsStagesOfDeadCreators(t *testing.T) {
	r := newRig(t)
	dir := filepath.Dir(r.path)
	old := r.clk.Now().Add(-2 * time.Second)
	mk := func(p string, children ...string) {
		for _, c := range append([]string{""}, children...) {
			if err := os.MkdirAll(filepath.Join(p, c), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		os.Chtimes(p, old, old)
	}
	dead := lockdir.StagePath(r.path, "new", "0123456789abcdef")
	mk(dead, lockdir.HeldName(1, lockdir.NewToken(), 0, old, old, time.Second), lockdir.QueueDir)
	claimed := lockdir.StagePath(r.path, "old", "00000000000000aa") // a sweeper died too
	mk(claimed, "free.3")
	fresh := lockdir.StagePath(r.path, "new", "1111111111111111")
	mk(fresh, lockdir.QueueDir)
	os.Chtimes(fresh, r.clk.Now(), r.clk.Now())
	full := lockdir.StagePath(r.path, "new", "2222222222222222")
	mk(full, "free.1")
	os.WriteFile(filepath.Join(full, "data"), []byte("precious"), 0o644)
	os.Chtimes(full, old, old)
	file := lockdir.StagePath(r.path, "new", "3333333333333333")
	os.WriteFile(file, []byte("precious"), 0o644)
	target := filepath.Join(dir, "target")
	mk(target, "free.1")
	link := lockdir.StagePath(r.path, "new", "4444444444444444")
	os.Symlink(target, link)
	other := lockdir.StagePath(filepath.Join(dir, "other"), "new", "5555555555555555")
	mk(other, "free.1")
	odd := filepath.Join(dir, "."+filepath.Base(r.path)+".dlock-new-XYZ")
	mk(odd)
	before := tree(t, dir)

	mustLock(t, r.lock(WithTimeout(time.Second)))
	for _, p := range []string{dead, claimed} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was not swept (%v)", filepath.Base(p), err)
		}
	}
	var kept []string
	for _, line := range strings.Split(before, "\n") {
		if !strings.Contains(line, filepath.Base(dead)) && !strings.Contains(line, filepath.Base(claimed)) {
			kept = append(kept, line)
		}
	}
	after := tree(t, dir)
	for _, line := range kept {
		if !strings.Contains(after, line) {
			t.Errorf("%q changed; before:\n%s\nafter:\n%s", line, before, after)
		}
	}
}

// A creator paused after making its stage, long enough for another
// process to sweep it, finds it gone and tries again: Lock succeeds.
func TestCreatorWhoseStageWasSweptTriesAgain(t *testing.T) {
	r := newRig(t)
	swept := 0
	f := func(stage string) {
		if swept++; swept == 1 {
			lockdir.SweepStages(r.path, time.Now().Add(time.Hour), time.Second, lockdir.StageMember) // real time: the stage's mtime is
			if _, err := os.Lstat(stage); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the stage was not swept: %v", err)
			}
		}
	}
	lockdir.TestStaged.Store(&f)
	t.Cleanup(func() { lockdir.TestStaged.Store(nil) })
	l := r.lock()
	mustLock(t, l)
	if swept != 2 {
		t.Fatalf("%d stages made, want 2 (one swept, one renamed into place)", swept)
	}
	if e := parseEntry(r.entryName()); e.holder.Token != l.token {
		t.Fatalf("entry %q is not the creator's", e.name)
	}
	names, _ := fsys.ReadNames(filepath.Dir(r.path))
	if len(names) != 1 {
		t.Fatalf("beside the lock: %q, want nothing", names)
	}
}

// An empty directory at the path (a user's mkdir) is a free lock: taken
// at once, by TryLock too, in place.
func TestEmptyDirectoryTakenAtOnce(t *testing.T) {
	r := newRig(t)
	os.Mkdir(r.path, 0o755)
	before, _ := os.Stat(r.path)
	b := r.lock(WithTimeout(2 * time.Second))
	if ok, err := b.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock on an empty directory: %v, %v", ok, err)
	}
	if e := parseEntry(r.entryName()); e.holder.Token != b.token {
		t.Fatalf("entry %q is not b's", e.name)
	}
	if after, _ := os.Stat(r.path); !os.SameFile(before, after) {
		t.Fatal("the directory was replaced, not taken as it is")
	}
	st, err := Inspect(r.path)
	if err != nil || !st.Held || st.Holder.Unknown {
		t.Fatalf("status after adopting: %+v, %v", st, err)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.lock().TryLock(); !ok || err != nil {
		t.Fatalf("the adopted lock after its release: %v, %v", ok, err)
	}
}

// An empty directory is taken as a semaphore or a reader/writer lock too:
// marked in place.
func TestEmptyDirectoryAsContainer(t *testing.T) {
	dir := t.TempDir()
	sp, rp := filepath.Join(dir, "sem"), filepath.Join(dir, "rw")
	os.Mkdir(sp, 0o755)
	os.Mkdir(rp, 0o755)
	s, _ := NewSemaphore(sp, 2)
	if ok, err := s.TryAcquire(); !ok || err != nil {
		t.Fatalf("TryAcquire on an empty directory: %v, %v", ok, err)
	}
	s.Release()
	rw, _ := NewRWLock(rp)
	if ok, err := rw.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock of an RWLock on an empty directory: %v, %v", ok, err)
	}
	rw.Unlock()
	if _, err := os.Stat(filepath.Join(sp, "size.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rp, "rwlock.32")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSemaphore(sp, 3); err == nil {
		t.Fatal("the adopted semaphore took another size")
	}
}

// Many takers of one empty directory at once: exactly one gets it (the
// exclusive mkdir of the queue decides), round after round.
func TestEmptyDirectoryOneAdopter(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 30; round++ {
		path := filepath.Join(dir, fmt.Sprintf("lock%d", round))
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 8; i++ {
			l, err := New(path, WithTimeout(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if ok, err := l.TryLock(); ok && err == nil {
					wins.Add(1)
				} else if err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d takers got the empty directory, want 1", round, wins.Load())
		}
		if names, _ := fsys.ReadNames(path); len(names) != 2 {
			t.Fatalf("round %d: the adopted lock holds %q, want its entry and its queue", round, names)
		}
	}
}

// hideEntries makes listings of path miss its state entries while hide
// is set, as listings racing renames do on ext4 and sshfs.
func hideEntries(t *testing.T, path string) *atomic.Bool {
	hide := new(atomic.Bool)
	f := func(p string, names []string) []string {
		if p != path || !hide.Load() {
			return names
		}
		return slices.DeleteFunc(names, lockdir.IsStateName)
	}
	lockdir.TestListing.Store(&f)
	t.Cleanup(func() { lockdir.TestListing.Store(nil) })
	return hide
}

// Listings that miss the state entry (every one, for a while) are an
// unknown holder, not a corrupt lock, even with waiters queued: the first
// waiter looks again at its poll interval, not the long one of a watched
// directory, since no event follows. Only a lock that shows its queue and
// no entry for TIMEOUT is ErrCorrupt, and then nothing in it is touched.
func TestListingsThatMissTheEntry(t *testing.T) {
	const poll = 100 * time.Millisecond
	r := newRig(t)
	hide := hideEntries(t, r.path)
	a, w := r.lock(), r.lock(WithPollInterval(poll), WithTimeout(time.Hour))
	looks := make(chan struct{}, 100)
	w.testStep = func(step string) {
		if step == "look" {
			looks <- struct{}{}
		}
	}
	mustLock(t, a)
	hide.Store(true)
	done := r.lockAsync(context.Background(), w) // it queues and looks again
	for len(looks) > 0 {
		<-looks
	}
	hide.Store(false) // the listings see the entry again; no event says so
	r.clk.Add(poll)
	waitFor(t, looks, "the waiter to look again at its poll interval")
	waitFor(t, hooks[w].blocked, "the waiter to wait for the holder it sees")
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the release to wake the waiter"); err != nil {
		t.Fatal(err)
	}

	// Entries hidden for good: ErrCorrupt after TIMEOUT, nothing touched.
	// (Unwatched: a watch event naming the holder's entry, late under
	// load, is another picture, which restarts the waiter's observation.)
	b := r.lock(WithTimeout(2*time.Second), WithWatch(false))
	hide.Store(true)
	done = r.lockAsync(context.Background(), b)
	r.clk.Add(2*time.Second - time.Nanosecond)
	notYet(t, done, "before TIMEOUT")
	r.clk.Add(time.Nanosecond)
	err := waitFor(t, done, "the waiter to give up on a lock without an entry")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), r.path) {
		t.Fatalf("Lock = %v, want ErrCorrupt naming %s", err, r.path)
	}
	hide.Store(false)
	if e := parseEntry(r.entryName()); e.holder.Token != w.token {
		t.Fatalf("entry %q is not the holder's any more", e.name)
	}
	w.Unlock()
}

// ghostEntries makes listings of path show, while on, the state entry it
// holds and also the old name it was renamed from: what a listing racing
// a rename on a distributed filesystem shows (GlusterFS carries a rename
// out brick by brick).
func ghostEntries(t *testing.T, path string) *atomic.Bool {
	on := new(atomic.Bool)
	f := func(p string, names []string) []string {
		if p != path || !on.Load() {
			return names
		}
		return append(slices.Clone(names), "free.1") // (names may be a pooled buffer)
	}
	lockdir.TestListing.Store(&f)
	t.Cleanup(func() { lockdir.TestListing.Store(nil) })
	return on
}

// Two state entries in listings are an unknown state, never fatal at
// once: a waiter waits and looks again, Inspect says so without an error,
// and only the same two entries shown for all of TIMEOUT are ErrCorrupt,
// with nothing in the lock directory touched.
func TestTwoEntriesInAListingAreLookedAtAgain(t *testing.T) {
	const poll = 100 * time.Millisecond
	r := newRig(t)
	ghost := ghostEntries(t, r.path)
	a, w := r.lock(), r.lock(WithPollInterval(poll), WithTimeout(time.Hour))
	mustLock(t, a)
	ghost.Store(true)
	done := r.lockAsync(context.Background(), w)
	st, err := Inspect(r.path)
	if err != nil || !st.Held || !st.Holder.Unknown || st.Entries != 2 {
		t.Fatalf("Inspect of a directory showing two entries = %+v, %v; want held, unknown holder, 2 entries, no error", st, err)
	}
	if !strings.Contains(st.String(), "2 state entries") {
		t.Errorf("Status %q does not say what it saw", st)
	}
	ghost.Store(false)
	r.clk.Add(poll)
	waitFor(t, hooks[w].blocked, "the waiter to look again and wait for the holder it sees")
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the waiter to acquire once the picture is clear"); err != nil {
		t.Fatal(err)
	}

	// Two entries for good: ErrCorrupt after TIMEOUT, nothing touched.
	// (Unwatched: a watch event naming the holder's entry, late under
	// load, is another picture, which restarts the waiter's observation.)
	b := r.lock(WithTimeout(2*time.Second), WithWatch(false))
	ghost.Store(true)
	done = r.lockAsync(context.Background(), b)
	held := r.entryName()
	r.clk.Add(2*time.Second - time.Nanosecond)
	notYet(t, done, "before TIMEOUT")
	r.clk.Add(time.Nanosecond)
	err = waitFor(t, done, "the waiter to give up on a lock that keeps showing two entries")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), r.path) || !strings.Contains(err.Error(), "2 state entries") {
		t.Fatalf("Lock = %v, want ErrCorrupt naming %s and what it saw", err, r.path)
	}
	ghost.Store(false)
	if n := r.entryName(); n != held {
		t.Fatalf("entry changed from %q to %q", held, n)
	}
	w.Unlock()
}

// An empty lock directory made by hand (mkdir -m 0777, for several users)
// is taken as it is: its mode (and owner) stay, and its queue gets the
// same mode, so that every user's waiters can queue.
func TestHandMadeLockDirectoryKeepsItsMode(t *testing.T) {
	r := newRig(t)
	if err := os.Mkdir(r.path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(r.path, 0o777); err != nil {
		t.Fatal(err)
	}
	l := r.lock(WithTimeout(time.Second))
	if ok, err := l.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock on an empty 0777 directory: %v, %v", ok, err)
	}
	defer l.Unlock()
	for _, p := range []string{r.path, filepath.Join(r.path, "queue")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o777 {
			t.Errorf("%s has mode %v after taking a 0777 directory, want 0777", p, fi.Mode().Perm())
		}
	}
}

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
		// The clock's jump passes the old holder's deadline too: its
		// heartbeat's refresh and its deadline's timer race (under Wine
		// the timer won twice in a row), so its Unlock may rightly say
		// ErrLost; either way its entry is released.
		r.clk.Add(2 * DefaultTimeout)
		if err := old.Unlock(); err != nil && !errors.Is(err, ErrLost) {
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
