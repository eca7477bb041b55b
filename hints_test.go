package dlock

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/hint"
	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/wine"
)

// waitAnnounced waits (a real-time safety limit only) until the lock at
// path holds n announcements (made in the background), and then for each
// of the waiters ws to look once more and block, as a wait does once its
// announcement is made.
func waitAnnounced(t *testing.T, path string, n int, ws ...*Lock) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		names, _ := lockdir.Announcements(path)
		if len(names) == n {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("announcements %q, want %d", names, n)
		}
	}
	for _, w := range ws {
		waitFor(t, hooks[w].blocked, "the look a waiter makes once announced")
	}
}

// needUDP skips a test where this process cannot listen for datagrams on
// loopback (under Wine 8: see internal/hint's tests); dlock waits without
// hints there.
func needUDP(t *testing.T) {
	t.Helper()
	if _, err := hint.Listen(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		if _, ok := wine.Version(); ok {
			t.Skipf("no UDP socket under Wine: %v", err)
		}
		t.Fatal(err)
	}
}

// announcedIn returns the one announcement in the lock at path, parsed.
func announcedIn(t *testing.T, path string) (string, hint.Token, netip.AddrPort) {
	t.Helper()
	names, err := lockdir.Announcements(path)
	if err != nil || len(names) != 1 {
		t.Fatalf("announcements %q (%v), want one", names, err)
	}
	_, tok, addr, ok := hint.ParseAnnouncement(names[0])
	if !ok {
		t.Fatalf("announcement %q does not parse", names[0])
	}
	return names[0], tok, addr
}

// A datagram wakes a waiter that neither watches nor polls for exactly
// one look; a flood of them, for one more look once the rate allows
// (the mock clock never moves by itself); the holder's release, sent by
// its own Lock, for the attempt that acquires. No poll, no watch event
// ever fires here: every look is a datagram's.
func TestWakeHintIsOneLook(t *testing.T) {
	needUDP(t)
	r := newRig(t)
	a := r.lock(WithWakeHints("127.0.0.1"))
	b := r.lock(WithWakeHints("127.0.0.1"), WithWatch(false), WithWakeHintRate(10))
	var looks atomic.Int32
	b.testStep = func(step string) {
		if step == "look" {
			looks.Add(1)
		}
	}
	mustLock(t, a)
	done := r.lockAsync(context.Background(), b)
	waitAnnounced(t, r.path, 1, b)
	_, tok, addr := announcedIn(t, r.path)
	blocked := hooks[b].blocked
	before := looks.Load()

	// A datagram while a still holds: one look, which finds it held.
	hint.Send([]netip.AddrPort{addr}, []hint.Msg{{Token: tok, Fence: a.Fence()}})
	waitFor(t, blocked, "the waiter to look once and sleep again")
	if n := looks.Load() - before; n != 1 {
		t.Fatalf("a datagram led to %d looks, want 1", n)
	}
	notYet(t, done, "a forged datagram")

	// A flood within the gap since: no look until the gap has passed,
	// then one.
	ln, err := hint.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		ln.Deliver(hint.Msg{Token: tok, Fence: a.Fence()})
	}
	if n := looks.Load() - before; n != 1 {
		t.Fatalf("a flood within the gap led to %d looks, want none", n-1)
	}
	r.clk.Add(100 * time.Millisecond)
	waitFor(t, blocked, "the flood's one deferred look")
	if n := looks.Load() - before; n != 2 {
		t.Fatalf("a flood led to %d looks, want 1", n-1)
	}
	notYet(t, done, "a flood")

	// The release: a's Lock lists the announcement and sends.
	r.clk.Add(100 * time.Millisecond)
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the release's datagram to wake the waiter"); err != nil {
		t.Fatal(err)
	}
	if n := looks.Load() - before; n != 3 {
		t.Fatalf("%d looks in all, want 3", n)
	}
	b.Unlock()
}

// A waiter's announcement is withdrawn once it acquires or gives up, and
// the wake directory with the last one: an uncontended release then
// finds no directory to list.
func TestWakeHintAnnouncementWithdrawn(t *testing.T) {
	needUDP(t)
	r := newRig(t)
	a := r.lock(WithWakeHints("127.0.0.1"))
	b := r.lock(WithWakeHints("127.0.0.1"), WithWatch(false), WithPatience(time.Second))
	mustLock(t, a)
	done := r.lockAsync(context.Background(), b)
	waitAnnounced(t, r.path, 1, b)
	r.clk.Add(time.Second)
	if err := waitFor(t, done, "PATIENCE to end"); err == nil {
		t.Fatal("acquired a held lock")
	}
	wake := filepath.Join(r.path, lockdir.QueueDir, lockdir.WakeDir)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) { // withdrawn in the background
		_, err := os.Stat(wake)
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the wake directory is still there 10s after the only waiter left (%v)", err)
		}
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// A waiter renews its announcement, so that releasers do not take it for
// a dead one's; a releaser removes one left by a dead waiter (older than
// its staleness) and leaves alone what is not an announcement.
func TestWakeHintAnnouncementRenewedAndStaleRemoved(t *testing.T) {
	needUDP(t)
	r := newRig(t)
	a := r.lock(WithWakeHints("127.0.0.1"), WithTimeout(time.Hour))
	b := r.lock(WithWakeHints("127.0.0.1"), WithWatch(false), WithTimeout(time.Hour))
	mustLock(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	done := r.lockAsync(ctx, b)
	waitAnnounced(t, r.path, 1, b)
	first, tok, addr := announcedIn(t, r.path)
	r.clk.Add(announceRenew)
	var renewed string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if names, _ := lockdir.Announcements(r.path); len(names) == 1 && names[0] != first {
			break
		}
	}
	renewed, _, _ = announcedIn(t, r.path)
	if renewed == first {
		t.Fatalf("announcement %q not renewed after %v", first, announceRenew)
	}
	cancel()
	waitFor(t, done, "the waiter to give up")

	dead := hint.AnnouncementName(r.clk.Now().Add(-announceStale-time.Second), tok, addr)
	foreign := "not-an-announcement"
	for _, n := range []string{dead, foreign} {
		if err := lockdir.Announce(r.path, n, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitHints(ctx); err != nil { // the releaser's listing, which removes the dead one's
		t.Fatalf("WaitHints: %v", err)
	}
	if names, _ := lockdir.Announcements(r.path); slices.Contains(names, dead) {
		t.Fatalf("a dead waiter's announcement is still there after the release's hints were sent: %q", names)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) { // and b's own, withdrawn in the background
		names, _ := lockdir.Announcements(r.path)
		if len(names) == 1 && names[0] == foreign {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("announcements %q 10s after a release, want only %q", names, foreign)
		}
	}
}

func TestWakeHintsOptionChecked(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "l"), WithWakeHintRate(-1)); err == nil {
		t.Fatal("a negative wake hint rate was taken")
	}
	// An address nobody can listen on: the wait polls, and says so.
	r := newRig(t)
	a := r.lock()
	b := r.lock(WithWakeHints("192.0.2.1:9"), WithWatch(false), WithPatience(time.Second))
	mustLock(t, a)
	done := r.lockAsync(context.Background(), b)
	if names, _ := lockdir.Announcements(r.path); len(names) != 0 {
		t.Fatalf("announced %q without a listener", names)
	}
	r.clk.Add(time.Second)
	waitFor(t, done, "PATIENCE to end")
	a.Unlock()
	if err := a.WaitHints(context.Background()); err != nil { // no hints: at once
		t.Fatal(err)
	}
}

// Three in a line, every wake-up a datagram: the holder's release wakes
// both waiters, one acquires and learns the other (a listing after an
// acquisition by waiting), and its release wakes that one.
func TestWakeHintsAlongALine(t *testing.T) {
	needUDP(t)
	r := newRig(t)
	opts := []Option{WithWakeHints("127.0.0.1"), WithWatch(false)}
	a, b, c := r.lock(opts...), r.lock(opts...), r.lock(opts...)
	mustLock(t, a)
	doneB := r.lockAsync(context.Background(), b)
	doneC := r.lockAsync(context.Background(), c)
	waitAnnounced(t, r.path, 2, b, c)
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	first, second := b, c
	var doneSecond <-chan error
	select {
	case err := <-doneB:
		if err != nil {
			t.Fatal(err)
		}
		doneSecond = doneC
	case err := <-doneC:
		if err != nil {
			t.Fatal(err)
		}
		first, second, doneSecond = c, b, doneB
	case <-time.After(10 * time.Second):
		t.Fatal("no waiter acquired after the release's datagrams")
	}
	// The second was woken by a's release too (the only wake-up it can
	// have): it looked, and sleeps again. Then past its rate limit.
	waitFor(t, hooks[second].blocked, "the second waiter to look after a's release")
	r.clk.Add(time.Second)
	notYet(t, doneSecond, "while the first holds")
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, doneSecond, "the second waiter, woken by the first's release"); err != nil {
		t.Fatal(err)
	}
	second.Unlock()
}
