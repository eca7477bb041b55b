package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A lock that does not exclude (as flock across two sshfs mounts) is n/a
// in the stale and late rows, even when every process starts slowly (a
// loaded machine): the bench asks at once, after everyone has started.
func TestRoundsNoExclusionUnderLoad(t *testing.T) {
	t.Setenv(peerDelayEnv, "700ms") // longer than stale/2
	dirs := []string{t.TempDir(), t.TempDir()}
	const stale = time.Second
	if _, err := staleRace(implNoLock, dirs, "s", t.TempDir(), stale, 10*time.Millisecond, time.Second); !errors.Is(err, errNoExclusion) {
		t.Errorf("stale race of a lock that does not exclude: %v, want %v", err, errNoExclusion)
	}
	if _, err := lateRelease(implNoLock, dirs, "l", stale, time.Second); !errors.Is(err, errNoExclusion) {
		t.Errorf("late release of a lock that does not exclude: %v, want %v", err, errNoExclusion)
	}
}

// A lock that never acquires (as StrictSoftFileLock through sshfs) cannot
// hang the counter or the uncontended step: each gives up at its limit.
func TestStuckPeerGivesUp(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	done, lost, over, err := counterCheck(implStuck, []string{dir}, "c", t.TempDir(), 2, 3, 500*time.Millisecond)
	if done != 0 || lost != 0 || over != 0 || err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("counter of a lock that never acquires: %d done, %d lost, %d both in, %v", done, lost, over, err)
	}
	p, err := startPeer(implStuck, filepath.Join(dir, "u"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	o := &op{impl: implStuck, batch: p.bench, abort: p.kill}
	if _, err := runBatchIn(o, 3, 300*time.Millisecond); !errors.Is(err, errNoAnswer) {
		t.Errorf("uncontended batch of a lock that never acquires: %v, want %v", err, errNoAnswer)
	}
	// Of this process: left behind, not waited for.
	o = &op{impl: "stuck here", run: func() error { select {} }}
	if _, err := runBatchIn(o, 3, 300*time.Millisecond); !errors.Is(err, errNoAnswer) {
		t.Errorf("uncontended batch stuck in this process: %v, want %v", err, errNoAnswer)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("giving up took %v", d)
	}
}

// starve stops pid (as a loaded machine can starve a process) until
// another process has taken its lock at path (stale is its TIMEOUT), then
// lets it run again. (A holder that runs again before anyone took its
// lock may keep it: its next refresh succeeds, which proves nobody did.)
func starve(t *testing.T, pid int, path string, stale time.Duration) {
	t.Helper()
	other, err := startPeer(implDlock, path, stale)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := other.lockAt(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitTold asks p until its library has told it of the loss.
func waitTold(t *testing.T, p *peerProc) lostNews {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n, err := p.lost(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !n.can {
			t.Fatalf("%s: cannot tell its holder", p.impl)
		}
		if n.told {
			return n
		}
	}
	t.Fatalf("%s: never told of the loss; its log: %v", p.impl, p.logged(context.Background()))
	return lostNews{}
}

// A holder starved past its deadline is told; a round in which another
// got in after that is legitimate ("told first"), one in which it got in
// before is not.
func TestOvertakenTold(t *testing.T) {
	const stale = 600 * time.Millisecond
	path := filepath.Join(t.TempDir(), "lock")
	p, err := startPeer(implDlock, path, stale)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, err := p.lost(context.Background()); err != nil || !n.can || n.told {
		t.Fatalf("before: %+v, %v", n, err)
	}
	acq, err := p.lockAt(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if acq.at <= 0 || !strings.HasPrefix(acq.detail, "fence=") {
		t.Errorf("lock answered %+v, want a time and a fence", acq)
	}
	before := mono()
	starve(t, p.cmd.Process.Pid, path, stale)
	n := waitTold(t, p)
	if n.at < before || !strings.Contains(n.why, "reason=") {
		t.Errorf("told %+v, want after %d with a reason", n, before)
	}
	tl := newTimeline()
	// Starved past its deadline, it is told so, or, if the other's
	// reclaim came first, that its lock was taken; only the first is its
	// own giving up.
	if told, why := overtaken(p, "the successor", n.at+1, tl); told != gaveUp(n.why) {
		t.Errorf("got in after the holder was told %q: told %v: %s", n.why, told, why)
	}
	if told, why := overtaken(p, "the successor", n.at-1, tl); told || !strings.Contains(why, "only") {
		t.Errorf("got in before the holder was told: told %v: %s", told, why)
	}
	if s := tl.String(); !strings.Contains(s, "successor: told that it lost the lock") {
		t.Errorf("timeline: %s", s)
	}
	tl.logs("successor", p)
	if s := tl.String(); !strings.Contains(s, "its library said: lost lock") {
		t.Errorf("timeline with the library's log: %s", s)
	}
	// A lock that cannot tell its holder says so.
	f, err := startPeer(implFlock, filepath.Join(t.TempDir(), "f"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if told, why := overtaken(f, "the successor", mono(), tl); told || !strings.Contains(why, "no way to tell") {
		t.Errorf("flock: told %v: %s", told, why)
	}
}

// dlock run tells its job, and so the bench, when its supervisor was
// starved past the deadline.
func TestRunLockerTold(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI")
	}
	bin := filepath.Join(t.TempDir(), "dlock")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/dlock").CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/dlock: %v: %s", err, out)
	}
	t.Setenv(dlockBinEnv, bin)
	const stale = 600 * time.Millisecond
	path := filepath.Join(t.TempDir(), "lock")
	p, err := startPeer(implDlockRun, path, stale)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.lockAt(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid, err := p.holderPid()
	if err != nil {
		t.Fatal(err)
	}
	starve(t, pid, path, stale)
	if n := waitTold(t, p); !strings.Contains(n.why, "lost the lock (fence") { // what, then why
		t.Errorf("told: %+v", n)
	}
	p.Unlock() // reports the loss (exit 76): not what is tested here
}

func TestVerdictTold(t *testing.T) {
	v := verdict{Bad: 1, N: 50, Told: 2}
	if s := v.String(); s != "1/50 (+2 told first)" {
		t.Errorf("%q", s)
	}
	if !v.bad() || (verdict{N: 50, Told: 2}).bad() {
		t.Error("a round told first is not bad; one that was not is")
	}
	f := &fsRun{Name: "tmpfs", Metrics: map[string]map[string]float64{}, Checks: map[string]map[string]verdict{}}
	f.check("late", implDlock, verdict{N: 50, Told: 1, Rounds: []string{"round 7 (told first): the successor had been told"}})
	dir := t.TempDir()
	if err := writeAltMarkdown(filepath.Join(dir, "a.md"), &altReport{FS: []*fsRun{f}}); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "a.md"))
	for _, s := range []string{"0/50 (+1 told first)", "late `dlock` round 7 (told first): the successor had been told"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("alternatives.md lacks %q:\n%s", s, md)
		}
	}
}

func TestReportArgs(t *testing.T) {
	got := strings.Join(reportArgs([]string{"-alternatives", "-rig-state", "/tmp/x", "-quick", "-out=/tmp/o", "--out", "/y", "-fs", "tmpfs"}), " ")
	if want := "-alternatives -quick -fs tmpfs"; got != want {
		t.Errorf("reportArgs: %q, want %q", got, want)
	}
}

// The server's operations on the lock counted are counted, those of a
// process walking the mount meanwhile are not.
func TestParseStraceCalls(t *testing.T) {
	const sample = `101 newfstatat(AT_FDCWD, "/r/export", {st_mode=S_IFDIR|0755, st_size=4096, ...}, AT_SYMLINK_NOFOLLOW) = 0
101 newfstatat(AT_FDCWD, "/r/export/alt-9/uncontended-dlock", {st_mode=S_IFDIR|0755, ...}, AT_SYMLINK_NOFOLLOW) = 0
101 rename("/r/export/alt-9/uncontended-dlock/free.1", "/r/export/alt-9/uncontended-dlock/held.2") = 0
101 openat(AT_FDCWD, "/r/export/alt-9/uncontended-dlock", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 5
101 getdents64(5, 0x55 /* 3 entries */, 32768) = 80
101 close(5)                     = 0
102 openat(AT_FDCWD, "/r/export/alt-9/uncontended-dlock-run", O_RDONLY|O_DIRECTORY <unfinished ...>
101 openat(AT_FDCWD, "/r/export/other", O_RDONLY|O_DIRECTORY) = 5
102 <... openat resumed>)        = 6
102 getdents64(6, 0x56 /* 2 entries */, 32768) = 48
101 getdents64(5, 0x55 /* 9 entries */, 32768) = 300
101 newfstatat(AT_FDCWD, "/r/export/other/x", {st_mode=S_IFREG|0644, ...}, AT_SYMLINK_NOFOLLOW) = 0
101 newfstatat(AT_FDCWD, "/r/export/alt-9/uncontended-dlock/held.2", 0x7ffc <unfinished ...>
101 <... newfstatat resumed>{st_mode=S_IFDIR|0755, ...}, AT_SYMLINK_NOFOLLOW) = 0
`
	name := filepath.Join(t.TempDir(), "strace.txt")
	if err := os.WriteFile(name, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	keep := func(p string) bool {
		return p == "/r/export" || p == "/r/export/alt-9" || strings.HasPrefix(p, "/r/export/alt-9/uncontended-dlock") && !strings.HasPrefix(p, "/r/export/alt-9/uncontended-dlock-run")
	}
	n, which, err := parseStraceCalls(name, keep)
	if err != nil {
		t.Fatal(err)
	}
	// The -run lock's listing (fd 6) and /r/export/other's (fd 5 reused) are not counted.
	if want := "getdents64 1, newfstatat 3, openat 1, rename 1"; n != 6 || which != want {
		t.Errorf("counted %d: %s, want 6: %s", n, which, want)
	}
}

// Told first is legitimate only if what it was told is that its own
// deadline passed: told that its lock was removed is a deletion.
func TestOvertakenWhy(t *testing.T) {
	for _, c := range []struct {
		why   string
		after bool // the other got in after the holder was told
		legit bool
	}{
		{"no refresh succeeded within TIMEOUT 2s - MARGIN 400ms", true, true},
		{"refresh-failed", true, true},
		{"Unable to update lock within the stale threshold", true, true},
		{"no refresh succeeded within TIMEOUT 2s - MARGIN 400ms", false, false},
		{"the lock directory was removed", true, false},
		{"ENOENT: no such file or directory", true, false},
		{"marker-missing", true, false},
	} {
		t.Setenv(testToldEnv, c.why)
		p, err := startPeer(implTold, filepath.Join(t.TempDir(), "l"), 0)
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.lockAt(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		in := st.at + int64(time.Second)
		if !c.after {
			in = st.at - int64(time.Second)
		}
		told, why := overtaken(p, "the successor", in, newTimeline())
		if told != c.legit {
			t.Errorf("told %q, the other got in after: %v: legitimate %v (%s), want %v", c.why, c.after, told, why, c.legit)
		}
		p.Close()
	}
}

// A peer dies with the process that started it (a worker killed at a
// trial's limit leaves no peer polling the mount).
func TestPeerDiesWithItsParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux's")
	}
	p, err := startPeer(implStuck, filepath.Join(t.TempDir(), "l"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if a := p.cmd.SysProcAttr; a == nil || a.Pdeathsig != syscall.SIGKILL {
		t.Fatalf("peer started without a death signal: %+v", a)
	}
}
