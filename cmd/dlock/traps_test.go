//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The traps of dlock's own CLI that a new user fell into, each closed.

// A lock directory made by hand (mkdir -m 0777, for many users) is a free
// lock: taken at once, -n too, its mode kept; break never deletes it.
func TestHandMadeDirectoryIsAFreeLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lock := filepath.Join(dir, "lock")
	os.Mkdir(lock, 0o755)
	os.Chmod(lock, 0o777)
	before, _ := os.Stat(lock)
	if code, _, errOut := run(t, "status", lock); code != 0 {
		t.Fatalf("status of an empty directory: exit %d %s, want 0 (free)", code, errOut)
	}
	if code, _, errOut := run(t, "break", "-force", lock); code != 0 {
		t.Fatalf("break -force of an empty directory: exit %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "run", "-n", lock, "--", "true"); code != 0 {
		t.Fatalf("run -n on an empty directory: exit %d %s, want it taken at once", code, errOut)
	}
	after, err := os.Stat(lock)
	if err != nil || !os.SameFile(before, after) || after.Mode().Perm() != 0o777 {
		t.Fatalf("the directory after a run: %v %v, want the same directory, mode 0777", after.Mode(), err)
	}
	// As a semaphore or an RW lock too, what is made inside getting its
	// mode.
	for _, flags := range [][]string{{"-slots", "2"}, {"-s"}} {
		d := filepath.Join(dir, flags[0][1:])
		os.Mkdir(d, 0o755)
		os.Chmod(d, 0o777)
		if code, _, errOut := run(t, append(append([]string{"run", "-n"}, flags...), d, "--", "true")...); code != 0 {
			t.Fatalf("run -n %v on an empty directory: exit %d %s", flags, code, errOut)
		}
		// A semaphore makes the slots it takes, starting at a random
		// one (so that holders spread): whichever it made.
		inner, _ := filepath.Glob(filepath.Join(d, "slot.*"))
		if flags[0] == "-s" {
			inner = []string{filepath.Join(d, "readers")}
		}
		if len(inner) == 0 {
			t.Errorf("run %v on a 0777 directory made no slot in it", flags)
		}
		for _, in := range inner {
			if fi, err := os.Stat(in); err != nil || fi.Mode().Perm() != 0o777 {
				t.Errorf("%s after run %v on a 0777 directory: %v %v, want mode 0777", in, flags, fi, err)
			}
		}
	}
	holdLock(t, lock)
	code, out, _ := run(t, "break", "-force", lock)
	if after, err := os.Stat(lock); code != 0 || err != nil || !os.SameFile(before, after) || after.Mode().Perm() != 0o777 {
		t.Fatalf("break -force: exit %d %q; the directory after: %v %v", code, out, after.Mode(), err)
	}
}

// status and break understand semaphores and reader/writer locks (each
// slot and its holder), and a layout mismatch names the flag that fits.
func TestStatusAndBreakOfEveryLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sem, rw, plain := filepath.Join(dir, "sem"), filepath.Join(dir, "rw"), filepath.Join(dir, "plain")
	holdLock(t, sem, "-slots", "2")
	holdLock(t, rw, "-s")
	holdLock(t, plain)
	code, st, errOut := status(t, sem, rw)
	held := 0
	for _, s := range st {
		if s.Held {
			held++
		}
	}
	if code != exitHeld || len(st) != 2+1+32 || held != 2 || errOut != "" {
		t.Fatalf("status of a semaphore and an RW lock: exit %d, %d entries (%d held), %s", code, len(st), held, errOut)
	}
	if !strings.HasSuffix(st[0].Path, "sem/slot.0") || !strings.HasSuffix(st[2].Path, "rw/writer") {
		t.Errorf("status lists %s, %s ...: want the semaphore's slots, then the writer lock", st[0].Path, st[2].Path)
	}
	// break: each slot; a live holder is left alone without -force.
	if code, _, errOut := run(t, "break", sem); code != exitBusy || !strings.Contains(errOut, "use -force") {
		t.Errorf("break of a held semaphore: exit %d %q", code, errOut)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"run", "-n", sem, "--", "true"}, "is a semaphore: take it with -slots 2"},
		{[]string{"run", "-n", "-slots", "3", sem, "--", "true"}, "has size 2, not 3"},
		{[]string{"run", "-n", rw, "--", "true"}, "is a reader/writer lock: take it with -s or -x"},
		{[]string{"run", "-n", "-slots", "2", plain, "--", "true"}, "is a plain lock: take it without -s, -x or -slots"},
		{[]string{"run", "-n", "-s", plain, "--", "true"}, "is a plain lock: take it without -s, -x or -slots"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != exitError || !strings.Contains(errOut, tc.msg) || strings.Contains(errOut, "which is not ours") {
			t.Errorf("dlock %q: exit %d, stderr %q; want %q", tc.args, code, errOut, tc.msg)
		}
	}
	// A flock(1) file: status looks at the lock dlock's flock takes.
	f := filepath.Join(dir, "app.lock")
	os.WriteFile(f, nil, 0o644)
	if code, _, errOut := run(t, "run", f, "--", "true"); code != exitError || !strings.Contains(errOut, "use dlock flock") {
		t.Errorf("run on a regular file: exit %d %q", code, errOut)
	}
	flockHold(t, flockBin(t), f)
	if code, st, _ := status(t, f); code != exitHeld || len(st) == 0 || !strings.HasSuffix(st[0].Path, "app.lock.dlock/writer") {
		t.Errorf("status of a file flock holds: exit %d %+v", code, st)
	}
}

// Messages in the user's words: a full filesystem names the lock, not an
// internal staging path; a filesystem where nothing can be made is not
// called a missing directory; status of a lock the user cannot reach
// names the directory that keeps them out.
func TestMessagesInTheUsersWords(t *testing.T) {
	t.Parallel()
	if code, _, errOut := run(t, "run", "/proc/dlock-test-lock", "--", "true"); code != exitError ||
		!strings.Contains(errOut, "the filesystem of /proc does not let directories be created in it") || strings.Contains(errOut, "does not exist") {
		t.Errorf("a lock in /proc: exit %d %q", code, errOut)
	}
	if os.Geteuid() != 0 {
		t.Skip("the rest needs root (a tiny tmpfs, another user)")
	}
	full := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=4", "tmpfs", full).Run(); err != nil {
		t.Skipf("cannot mount a tiny tmpfs: %v", err)
	}
	t.Cleanup(func() { exec.Command("umount", full).Run() })
	for i := 0; ; i++ { // use up the inodes
		if os.Mkdir(filepath.Join(full, "x"+strconv.Itoa(i)), 0o755) != nil {
			break
		}
	}
	lock := filepath.Join(full, "lock")
	if code, _, errOut := run(t, "run", lock, "--", "true"); code != exitError || !strings.Contains(errOut, "no space left on its filesystem") ||
		!strings.Contains(errOut, lock) || strings.Contains(errOut, ".dlock-") {
		t.Errorf("a full filesystem: exit %d %q", code, errOut)
	}
	private := filepath.Join(t.TempDir(), "private")
	os.MkdirAll(filepath.Join(private, "sub", "lock"), 0o755)
	os.Chmod(private, 0o700)
	for d := filepath.Dir(private); d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(filepath.Dir(dlockBin(t)), 0o755)
	cmd := exec.Command(dlockBin(t), "status", filepath.Join(private, "sub", "lock"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if exitCode(err) != exitError || !strings.Contains(string(out), "permission denied reading the lock") || !strings.Contains(string(out), private+" is mode 0700") || strings.Contains(string(out), "creating") {
		t.Errorf("status of a lock behind a 0700 directory: %v %q", err, out)
	}
}
