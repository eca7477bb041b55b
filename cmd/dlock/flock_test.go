//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The flags that flock(1) users reach for, each as flock spells it.

func TestFlockFlags(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	holdLock(t, lock, "-stale-after", "30") // plain seconds
	if _, st, _ := status(t, lock); len(st) != 1 || st[0].Holder == nil || st[0].Holder.TimeoutSeconds != 30 {
		t.Fatalf("-stale-after 30: %+v", st)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string // in stderr
	}{
		{[]string{"run", "-n", lock, "--", "true"}, exitBusy, "is busy"},
		{[]string{"run", "-w", "0.2", "-E", "9", lock, "--", "true"}, 9, "gave up after"},
		{[]string{"run", "-patience", "200ms", lock, "--", "true"}, exitBusy, "is busy"},
		{[]string{"run", lock, "-q", "-n", "--", "true"}, exitBusy, ""}, // flags after PATH
		{[]string{"run", lock, "-E", "7", "-n", "true"}, 7, "is busy"},
		{[]string{"run", "-patience", "-1", lock, "true"}, exitUsage, "must not be negative"},
		{[]string{"run", lock, "-nope", "--", "true"}, exitUsage, "Usage: dlock run"},
		{[]string{"run", "-c", "true", lock, "--", "true"}, exitUsage, "-c and COMMAND"},
		{[]string{"run", "-s", "-x", lock, "true"}, exitUsage, "give one"},
		{[]string{"run", "-stale-after", "10", "-grace", "8", lock, "true"}, exitUsage, "give -grace below"},
		// flock's --timeout is a wait: never taken for the stale time.
		{[]string{"run", "-timeout", "1", lock, "true"}, exitUsage, "give -stale-after 1 for TIMEOUT"},
		{[]string{"run", "--timeout=1", lock, "true"}, exitUsage, "or -w 1 to wait"},
		{[]string{"run", "--wait", "0.2", "-E", "9", lock, "--", "true"}, 9, "gave up after"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code == tc.code && code != exitUsage && strings.Contains(errOut, "still waiting for the filesystem") {
			// PATIENCE ran out before even one attempt came back: on a
			// loaded machine (a -race run beside others) one can take
			// 200ms, and the busy exit then says so instead of naming the
			// holder.
			continue
		}
		if code != tc.code || !strings.Contains(errOut, tc.msg) || tc.msg == "" && errOut != "" {
			t.Errorf("dlock %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
	// -c runs a shell command line, with the lock's variables.
	free := filepath.Join(t.TempDir(), "free")
	if code, out, errOut := run(t, "run", free, "-c", `test -n "$DLOCK_FENCE" && echo "in $DLOCK_PATH"; exit 4`); code != 4 || out != "in "+free+"\n" {
		t.Errorf("-c: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestSharedExclusiveAndSlots(t *testing.T) {
	t.Parallel()
	rw := filepath.Join(t.TempDir(), "rw")
	holdLock(t, rw, "-s")
	// A second reader gets in; a writer does not.
	if code, _, errOut := run(t, "run", "-s", "-n", rw, "--", "true"); code != 0 {
		t.Fatalf("second reader: exit %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "run", "-x", "-n", rw, "--", "true"); code != exitBusy {
		t.Fatalf("writer while a reader holds: exit %d %s", code, errOut)
	}
	// A plain lock on a reader/writer lock's path is refused, saying how.
	if code, _, errOut := run(t, "run", "-n", rw, "--", "true"); code != exitError || !strings.Contains(errOut, "-s or -x") {
		t.Fatalf("plain lock on an RW lock: exit %d %q", code, errOut)
	}

	sem := filepath.Join(t.TempDir(), "sem")
	holdLock(t, sem, "-slots", "2")
	holdLock(t, sem, "-slots", "2")
	if code, _, errOut := run(t, "run", "-slots", "2", "-n", sem, "--", "true"); code != exitBusy {
		t.Fatalf("third of 2 slots: exit %d %s", code, errOut)
	}
}

// holdScript runs a POSIX script with dlock on its PATH.
func holdScript(t *testing.T, script string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(dlockBin(t))+":"+os.Getenv("PATH"))
	return cmd
}

func TestHoldGuardsTheRestOfAScript(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lock, held, goOn := filepath.Join(dir, "lock"), filepath.Join(dir, "held"), filepath.Join(dir, "go")
	// The script holds the lock until it exits, without releasing it.
	sc := holdScript(t, `eval "$(dlock hold -n -pid $$ "$1")" || exit $?
touch "$2"
while [ ! -e "$3" ]; do sleep 0.01; done
exit 0`, lock, held, goOn)
	var out syncBuffer
	sc.Stderr = &out
	if err := sc.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the script to hold the lock", func() bool { return fileExists(held) })
	holder := holderPID(t, lock)
	// Busy for others, and for another script (eval fails with 75).
	if code, _, _ := run(t, "run", "-n", lock, "--", "true"); code != exitBusy {
		t.Fatalf("lock held by a script: run -n exit %d", code)
	}
	other := holdScript(t, `eval "$(dlock hold -n -q -pid $$ "$1")" || exit $?; exit 0`, lock)
	if err := other.Run(); exitCode(err) != exitBusy {
		t.Fatalf("second script: %v, want exit 75", err)
	}
	os.WriteFile(goOn, nil, 0o644)
	if err := sc.Wait(); err != nil {
		t.Fatalf("script: %v; stderr %s", err, out.String())
	}
	// The script is gone, so is the lock.
	eventually(t, 10*time.Second, "the holder to release after the script exited", func() bool {
		_, st, _ := status(t, lock)
		return len(st) == 1 && !st[0].Held && processGone(holder)
	})

	// dlock release ends the hold early; the script goes on unlocked.
	sc = holdScript(t, `eval "$(dlock hold -pid $$ "$1")" || exit $?
dlock release || exit 8
dlock status -q "$1"; echo "status after release: $?"`, lock)
	b, err := sc.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "status after release: 0") {
		t.Fatalf("release: %v, %s", err, b)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

func TestModesAndMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// -mode for a lock shared between users.
	shared := filepath.Join(dir, "shared")
	if code, _, errOut := run(t, "run", "-mode", "0777", shared, "--", "true"); code != 0 {
		t.Fatalf("-mode: exit %d %s", code, errOut)
	}
	if fi, _ := os.Stat(shared); fi.Mode().Perm() != 0o777 {
		t.Fatalf("-mode 0777 made %v", fi.Mode())
	}
	// A lock directory that exists keeps its mode: one dlock made, and
	// an empty one made by hand.
	os.Chmod(shared, 0o775)
	premade := filepath.Join(dir, "premade")
	os.Mkdir(premade, 0o777)
	os.Chmod(premade, 0o777)
	for path, want := range map[string]os.FileMode{shared: 0o775, premade: 0o777} {
		if code, _, errOut := run(t, "run", "-stale-after", "0.5", path, "--", "true"); code != 0 {
			t.Fatalf("run on %s: exit %d %s", path, code, errOut)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v after a run, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if code, _, errOut := run(t, "run", "-mode", "0644", shared, "true"); code != exitUsage || !strings.Contains(errOut, "owner rwx") {
		t.Errorf("-mode 0644: exit %d %q", code, errOut)
	}

	// A missing parent is named, not an internal staging path.
	missing := filepath.Join(dir, "no", "such", "lock")
	code, _, errOut := run(t, "run", missing, "--", "true")
	if code != exitError || !strings.Contains(errOut, filepath.Join(dir, "no", "such")+" does not exist") || strings.Contains(errOut, ".dlock-") {
		t.Errorf("missing parent: exit %d %q", code, errOut)
	}

	// Permission denied says which directory and what would work.
	if os.Geteuid() != 0 {
		return
	}
	pub := t.TempDir()
	for d := pub; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(filepath.Dir(dlockBin(t)), 0o755)
	os.Chmod(pub, 0o755)
	asNobody := func(args ...string) (int, string) {
		cmd := exec.Command(dlockBin(t), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		return exitCode(err), stderr.String()
	}
	code, errOut = asNobody("run", filepath.Join(pub, "lock"), "--", "true")
	if code != exitError || !strings.Contains(errOut, "write permission on "+pub) || !strings.Contains(errOut, "mode 0755") || !strings.Contains(errOut, "-mode 0777") {
		t.Errorf("permission denied creating: exit %d %q", code, errOut)
	}
	mine := filepath.Join(pub, "mine")
	run(t, "run", mine, "--", "true") // made by root, 0755
	code, errOut = asNobody("run", mine, "--", "true")
	if code != exitError || !strings.Contains(errOut, "write permission on "+mine) || !strings.Contains(errOut, "chmod 0777") {
		t.Errorf("permission denied on the lock: exit %d %q", code, errOut)
	}
}

// A plain lock whose holder handed it to the waiters' queue (free.E.q)
// is still a plain lock to the flock personality.
func TestLayoutOfALockHandedToTheQueue(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"free.42.q", "queue"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := dlockLayout(dir); got != "plain" {
		t.Fatalf("dlockLayout = %q, want plain", got)
	}
	if got := entryKind("free.42.qq"); got != "" {
		t.Fatalf("entryKind(free.42.qq) = %q, want nothing dlock makes", got)
	}
}
