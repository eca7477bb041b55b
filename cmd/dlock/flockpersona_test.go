//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The flock personality, tested as a flock(1) user meets it: through a
// link named flock, with flock's command lines, exit statuses and
// messages; each behaviour that util-linux's own tests check
// (tests/ts/flock/{flock,close,unlock}) and each option of its manual.

var (
	flockOnce sync.Once
	flockPath string
)

// flockBin is a link named flock to the dlock binary.
func flockBin(t *testing.T) string {
	t.Helper()
	bin := dlockBin(t)
	flockOnce.Do(func() {
		flockPath = filepath.Join(filepath.Dir(bin), "flock")
		os.Symlink(bin, flockPath)
	})
	return flockPath
}

// flockRun runs flock with args, env added; it returns the exit status,
// stdout and stderr.
func flockRun(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(flockBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return exitCode(err), out.String(), errOut.String()
}

// flockHold starts flock holding file (with flags) until the test lets it
// go, and waits until its COMMAND runs. It returns the release function.
func flockHold(t *testing.T, bin, file string, flags ...string) func() {
	t.Helper()
	dir := t.TempDir()
	ready, release := filepath.Join(dir, "ready"), filepath.Join(dir, "release")
	args := append(append([]string{}, flags...), file, "sh", "-c", `touch "$1"; while [ ! -e "$2" ]; do sleep 0.01; done`, "sh", ready, release)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		os.WriteFile(release, nil, 0o644)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("%s %q still runs after its release", bin, args)
		}
	}
	t.Cleanup(stop)
	eventually(t, 10*time.Second, "the holder's COMMAND to start", func() bool { return fileExists(ready) })
	return stop
}

func TestFlockConflictAndWait(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "lockfile")
	flockHold(t, flockBin(t), f) // exclusive, the default
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		// -n, its spellings, and -E for the conflict status (default 1).
		{[]string{"-n", f, "true"}, 1, ""},
		{[]string{"--nonblocking", "--conflict-exit-code", "123", f, "true"}, 123, ""},
		{[]string{"--nonblock", "-E", "123", f, "true"}, 123, ""}, // an abbreviation
		{[]string{"--nb", "--exclusive", "-E123", f, "true"}, 123, ""},
		{[]string{"-xn", f, "true"}, 1, ""},
		{[]string{"-en", f, "true"}, 1, ""},
		{[]string{"-nE", "7", f, "true"}, 7, ""},
		{[]string{"--conflict-exit-code=9", "-n", f, "true"}, 9, ""},
		{[]string{"-s", "-n", f, "true"}, 1, ""}, // shared waits for exclusive
		{[]string{"-F", "-n", f, "true"}, 1, ""}, // --no-fork
		{[]string{"--no-fork", "--nonblocking", "-E", "123", f, "true"}, 123, ""},
		// -w, --wait, --timeout: the wait, fractions allowed; 0 is -n.
		{[]string{"-w", "0.2", f, "true"}, 1, ""},
		{[]string{"-w0.2", "-E", "5", f, "true"}, 5, ""},
		{[]string{"--wait=0.2", f, "true"}, 1, ""},
		{[]string{"--timeout", "0.2", "--conflict-exit-code", "5", f, "true"}, 5, ""},
		{[]string{"-w", "0", f, "true"}, 1, ""},
		// --verbose says why, on stderr.
		{[]string{"--verbose", "-n", f, "true"}, 1, "flock: failed to get lock\n"},
		{[]string{"--verbose", "-w", ".1", f, "true"}, 1, "flock: timeout while waiting to get lock\n"},
		// --fcntl locks are apart from flock locks, as in the kernel.
		{[]string{"--fcntl", "-n", f, "true"}, 0, ""},
	} {
		start := time.Now()
		code, out, errOut := flockRun(t, nil, tc.args...)
		if code != tc.code || errOut != tc.err || out != "" {
			t.Errorf("flock %q: exit %d, stdout %q, stderr %q; want exit %d, stderr %q", tc.args, code, out, errOut, tc.code, tc.err)
		}
		for _, a := range tc.args {
			if (a == "0.2" || a == "-w0.2" || a == "--wait=0.2") && time.Since(start) < 200*time.Millisecond {
				t.Errorf("flock %q gave up after %v, before its wait", tc.args, time.Since(start))
			}
		}
	}
	// The same through "dlock flock".
	if code, _, _ := run(t, "flock", "-n", f, "true"); code != 1 {
		t.Errorf("dlock flock -n on a held file: exit %d, want 1", code)
	}
}

func TestFlockSharedAndTimeout(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "lockfile")
	release := flockHold(t, flockBin(t), f, "--shared")
	if code, out, _ := flockRun(t, nil, "--shared", f, "echo", "Have shared lock"); code != 0 || out != "Have shared lock\n" {
		t.Errorf("a second shared lock: exit %d, %q", code, out)
	}
	if code, _, _ := flockRun(t, nil, "-n", "-x", f, "true"); code != 1 {
		t.Errorf("exclusive while shared is held: exit %d, want 1", code)
	}
	// --timeout 5: waits for the shared holder, then runs.
	start := time.Now()
	go func() { time.Sleep(300 * time.Millisecond); release() }()
	if code, out, _ := flockRun(t, nil, "--timeout", "5", "--conflict-exit-code", "5", f, "echo", "After timeout."); code != 0 || out != "After timeout.\n" {
		t.Errorf("waiting for the shared holder: exit %d, %q", code, out)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("the wait took %v: want the holder's 300ms, well under -w 5", d)
	}
}

func TestFlockCommandAndStatuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "lockfile")
	for _, tc := range []struct {
		env  []string
		args []string
		code int
		out  string
		err  string // a regexp
	}{
		{nil, []string{f, "sh", "-c", "exit 7"}, 7, "", "^$"},
		{nil, []string{f, "sh", "-c", "kill -KILL $$"}, 128 + 9, "", "^$"},
		{nil, []string{"-x", f, "echo", "a b c"}, 0, "a b c\n", "^$"},
		// -c through $SHELL (here echo, to see what it is given), else /bin/sh.
		{[]string{"SHELL=/bin/echo"}, []string{f, "-c", "hi there"}, 0, "-c hi there\n", "^$"},
		{[]string{"SHELL=/bin/echo"}, []string{f, "--command", "x"}, 0, "-c x\n", "^$"},
		{[]string{"SHELL="}, []string{f, "-c", `echo "$0"`}, 0, "/bin/sh\n", "^$"},
		// COMMAND sees the dlock lock.
		{nil, []string{f, "sh", "-c", `echo "$DLOCK_PATH"; test "$DLOCK_FENCE" -gt 0`}, 0, f + ".dlock\n", "^$"},
		// --verbose's lines, on stdout as flock prints them.
		{nil, []string{"--verbose", f, "true"}, 0, "", "^$"},
		// flock's errors and statuses.
		{nil, []string{f, "no-such-command-dlock-test"}, exUnavailable, "", "^flock: failed to execute no-such-command-dlock-test: No such file or directory\n$"},
		{nil, []string{filepath.Join(dir, "no", "such"), "true"}, exNoInput, "", "^flock: cannot open lock file .*/no/such: No such file or directory\n$"},
		{nil, nil, exUsageF, "", "^flock: not enough arguments\nTry 'flock --help' for more information.\n$"},
		{nil, []string{"--bogus", f, "true"}, exUsageF, "", "^flock: unrecognized option '--bogus'\nTry 'flock --help' for more information.\n$"},
		{nil, []string{"--no", f, "true"}, exUsageF, "", "unrecognized option '--no'"}, // ambiguous
		{nil, []string{"-w"}, exUsageF, "", "^flock: option '-w' requires an argument\n"},
		{nil, []string{"-w", "abc", f, "true"}, exUsageF, "", "^flock: invalid timeout: 'abc'\n$"},
		{nil, []string{"-E", "300", f, "true"}, exUsageF, "", `^flock: invalid exit code \(allowed values: 0-255\): '300'` + "\n$"},
		{nil, []string{"-F", "-o", f, "true"}, exUsageF, "", "^flock: the --no-fork and --close options are incompatible\n$"},
		{nil, []string{f, "-c", "a", "b"}, exUsageF, "", "^flock: -c requires exactly one command argument\n$"},
		{nil, []string{"--fd", "3"}, exUsageF, "", "^flock: missing command\n$"},
		{nil, []string{"abc"}, exUsageF, "", "^flock: invalid file descriptor: 'abc'\n$"},
		{nil, []string{"--start", "5", f, "true"}, exUsageF, "", "dlock locks the whole file"},
		{nil, []string{"99"}, exDataErr, "", "^flock: 99: Bad file descriptor\n$"},
	} {
		code, out, errOut := flockRun(t, tc.env, tc.args...)
		if code != tc.code || !regexp.MustCompile(tc.err).MatchString(errOut) || tc.out != "" && out != tc.out {
			t.Errorf("flock %q (env %q): exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr matching %q", tc.args, tc.env, code, out, errOut, tc.code, tc.out, tc.err)
		}
	}
	code, out, _ := flockRun(t, nil, "--verbose", f, "true")
	if code != 0 || !regexp.MustCompile(`^flock: getting lock took [0-9]+\.[0-9]{6} seconds\nflock: executing true\n$`).MatchString(out) {
		t.Errorf("--verbose: exit %d, stdout %q", code, out)
	}
	for _, h := range []string{"-h", "--help"} {
		if code, out, errOut := flockRun(t, nil, h); code != 0 || !strings.Contains(out, "--conflict-exit-code <number>") || !strings.Contains(out, "--stale-after") || errOut != "" {
			t.Errorf("flock %s: exit %d, stdout %q, stderr %q", h, code, out, errOut)
		}
	}
	if code, out, _ := flockRun(t, nil, "-V"); code != 0 || !strings.HasPrefix(out, "flock from dlock ") {
		t.Errorf("flock -V: exit %d, %q", code, out)
	}
}

// sh runs a shell script with flock (the link) first on PATH.
func flockScript(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"-c", script, "bash"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(flockBin(t))+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestFlockDescriptorForms(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "lock")
	// exec 9>F; flock -n 9: held until the shell closes 9, unlocks it
	// with -u, or exits (util-linux's unlock test, and the manual's
	// examples).
	// A descriptor closed (or a process gone) frees the dlock lock as
	// soon as its holder sees the kernel's lock go, a moment after:
	// "free" allows it a second under a loaded machine.
	out, err := flockScript(t, `
free() { for i in $(seq 100); do flock -n "$1" true && return 0; sleep 0.01; done; return 1; }
exec 9>"$1"
flock -n --verbose 9 | sed -E 's/[0-9]+\.[0-9]+/N/' || exit 9
flock -n "$1" true; echo "another while 9 holds: $?"
flock -n 9; echo "9 again: $?"
flock -u 9
flock -x --wait 0 "$1" true; echo "after -u: $?"
flock -n 9; echo "9 relocked: $?"
flock --fd 9 -u true; flock -n "$1" true; echo "after --fd 9 -u: $?"
flock -n 9; echo "9 relocked again: $?"
exec 9>&-
free "$1"; echo "after 9 closed: $?"
( flock -n 8 || exit 1; flock -n "$1" true; echo "in the subshell: $?" ) 8>"$1"
free "$1"; echo "after the subshell: $?"
flock -n 7 7>"$1"; flock -n "$1" true; echo "after flock -n 7 7>F: $?"
`, f)
	want := `flock: getting lock took N seconds
another while 9 holds: 1
9 again: 0
after -u: 0
9 relocked: 0
after --fd 9 -u: 0
9 relocked again: 0
after 9 closed: 0
in the subshell: 1
after the subshell: 0
after flock -n 7 7>F: 0
`
	if err != nil || out != want {
		t.Errorf("descriptor forms: %v\n%s\nwant\n%s", err, out, want)
	}

	// --fd with a command, and --close (util-linux's close test): the
	// command does not get the descriptor, so locking it fails with EBADF.
	out, err = flockScript(t, `
exec 10<>"$1"
flock --exclusive --close --fd 10 --command "flock --exclusive --nonblock --fd 10 true"; echo "exit code: $?"
flock --exclusive --fd 10 --command "flock --exclusive --nonblock --fd 10 true"; echo "exit code: $?"
flock --fd 10 -n sh -c 'flock -n "$1" true; echo "other while --fd 10 runs: $?"' sh "$1"
flock -n "$1" true; echo "the kernel lock stays with descriptor 10: $?"
exec 10>&-
flock -o "$1" sh -c 'test -e /proc/self/fd/3 && echo "-o: fd 3 open" || echo "-o: no fd 3"'
flock "$1" sh -c 'test /proc/self/fd/3 -ef "$1" && echo "fd 3 is the file"' sh "$1"
`, f)
	want = `flock: 10: Bad file descriptor
exit code: 65
exit code: 0
other while --fd 10 runs: 1
the kernel lock stays with descriptor 10: 1
-o: no fd 3
fd 3 is the file
`
	if err != nil || out != want {
		t.Errorf("--fd and --close: %v\n%s\nwant\n%s", err, out, want)
	}
}

func TestFlockNoForkKeepsTheLock(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "lock")
	// -F: the command is this process (same pid), with the lock's
	// variables, and holds both locks while it runs.
	out, err := flockScript(t, `
flock -F "$1" sh -c 'echo "pid $$ fence $DLOCK_FENCE"; flock -n "$1" true; echo "other: $?"' sh "$1" &
wait $!
echo "bg pid $!"
for i in $(seq 100); do flock -n "$1" true && break; sleep 0.01; done; echo "after: $?"
`, f)
	lines := strings.Split(out, "\n")
	if err != nil || len(lines) < 4 || !strings.HasPrefix(lines[0], "pid ") || lines[1] != "other: 1" || lines[3] != "after: 0" {
		t.Fatalf("-F: %v\n%s", err, out)
	}
	f0 := strings.Fields(lines[0])
	if len(f0) != 4 || "bg pid "+f0[1] != lines[2] || f0[3] == "" {
		t.Errorf("-F: the command ran as pid %q, flock was %q; fence %q", f0[1], lines[2], f0)
	}
}

// Where the dlock lock goes, and that it is one lock for every name of
// the file and every user who may read it.
func TestFlockLockDirectories(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "app.lock")
	os.WriteFile(f, nil, 0o644)
	if code, out, _ := flockRun(t, nil, f, "sh", "-c", `echo "$DLOCK_PATH"`); code != 0 || out != f+".dlock\n" {
		t.Fatalf("file: exit %d, DLOCK_PATH %q", code, out)
	}
	if fi, err := os.Stat(f + ".dlock"); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("lock directory of a 0644 file: %v, %v; want mode 0777 (every user who may read the file may flock it)", fi, err)
	}
	// A symlink to the file takes the same lock.
	link := filepath.Join(dir, "link")
	os.Symlink(f, link)
	flockHold(t, flockBin(t), link)
	if code, _, _ := flockRun(t, nil, "-n", f, "true"); code != 1 {
		t.Errorf("the file while its symlink is locked: exit %d, want 1", code)
	}
	// A directory: its lock is inside it, the directory's own contents
	// untouched otherwise; "flock /tmp -c cat" from the manual.
	d := filepath.Join(dir, "data")
	os.Mkdir(d, 0o755)
	os.WriteFile(filepath.Join(d, "x"), nil, 0o644)
	if code, out, _ := flockRun(t, nil, d, "-c", `echo "$DLOCK_PATH"`); code != 0 || out != filepath.Join(d, ".flock.dlock")+"\n" {
		t.Errorf("directory: exit %d, DLOCK_PATH %q", code, out)
	}
	// Names that only look like dlock's do not make a directory a lock.
	look := filepath.Join(dir, "lookalike")
	os.Mkdir(look, 0o755)
	os.WriteFile(filepath.Join(look, "size.txt"), nil, 0o644)
	if code, out, errOut := flockRun(t, nil, look, "-c", `echo "$DLOCK_PATH"`); code != 0 || out != filepath.Join(look, ".flock.dlock")+"\n" {
		t.Errorf("a directory holding size.txt: exit %d, DLOCK_PATH %q %s", code, out, errOut)
	}
	// A dlock lock directory is itself the lock: dlock run and flock
	// exclude each other on it.
	dl := filepath.Join(dir, "dl")
	holdLock(t, dl)
	if code, _, _ := flockRun(t, nil, "-n", dl, "true"); code != 1 {
		t.Errorf("flock on a dlock lock held by dlock run: exit %d, want 1", code)
	}
	rw := filepath.Join(dir, "rw")
	holdLock(t, rw, "-s")
	if code, _, _ := flockRun(t, nil, "-n", "-s", rw, "true"); code != 0 {
		t.Errorf("flock -s on a reader/writer lock a reader holds: exit %d, want 0", code)
	}
	if code, _, _ := flockRun(t, nil, "-n", rw, "true"); code != 1 {
		t.Errorf("flock -x on a reader/writer lock a reader holds: exit %d, want 1", code)
	}
}

// A host still running util-linux flock on FILE is excluded on its own
// host: dlock takes the kernel's lock too.
func TestFlockWithUtilLinuxFlock(t *testing.T) {
	t.Parallel()
	ul := "/usr/bin/flock"
	if b, err := exec.Command(ul, "--version").Output(); err != nil || !strings.Contains(string(b), "util-linux") {
		t.Skip("no util-linux flock at " + ul)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "lock")
	release := flockHold(t, ul, f)
	if code, _, _ := flockRun(t, nil, "-n", f, "true"); code != 1 {
		t.Errorf("dlock's flock while util-linux flock holds: exit %d, want 1", code)
	}
	release()
	flockHold(t, flockBin(t), f)
	if err := exec.Command(ul, "-n", f, "true").Run(); exitCode(err) != 1 {
		t.Errorf("util-linux flock while dlock's flock holds: %v, want exit 1", err)
	}
	// A directory, both ways.
	d := filepath.Join(dir, "d")
	os.Mkdir(d, 0o755)
	flockHold(t, ul, d)
	if code, _, _ := flockRun(t, nil, "-n", d, "true"); code != 1 {
		t.Errorf("dlock's flock on a directory util-linux flock holds: exit %d, want 1", code)
	}
}

// COMMAND's exit returns its status at once; what it left running keeps
// the lock until it exits, as children holding flock's descriptor do.
func TestFlockLeftoversKeepTheLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, release, gone := filepath.Join(dir, "lock"), filepath.Join(dir, "release"), filepath.Join(dir, "gone")
	// The leftover runs until the test writes release: a dlock that
	// waited for it would never return, so the limit only bounds a
	// failure (5s was too little on a loaded machine under -race).
	start := time.Now()
	code, _, _ := flockRun(t, nil, f, "sh", "-c", `(while [ ! -e "$1" ]; do sleep 0.01; done; touch "$2") >/dev/null 2>&1 & exit 3`, "sh", release, gone)
	if code != 3 || time.Since(start) > 30*time.Second {
		t.Fatalf("exit %d after %v, want COMMAND's 3 at once", code, time.Since(start))
	}
	if code, _, _ := flockRun(t, nil, "-n", f, "true"); code != 1 || fileExists(gone) {
		t.Fatalf("while the leftover runs: exit %d, want 1", code)
	}
	os.WriteFile(release, nil, 0o644)
	eventually(t, 10*time.Second, "the lock to pass once the leftover exited", func() bool {
		code, _, _ := flockRun(t, nil, "-n", f, "true")
		return code == 0
	})
	if !fileExists(gone) {
		t.Error("the lock passed before the leftover exited")
	}
	// Back to back: with nothing left over, the lock is free by the time
	// flock returns.
	for i := 0; i < 20; i++ {
		if code, _, errOut := flockRun(t, nil, "-n", f, "true"); code != 0 {
			t.Fatalf("run %d back to back: exit %d %s", i, code, errOut)
		}
	}
}

// The same command lines across two mounts of one export (two hosts):
// util-linux flock lets both in, dlock's flock one at a time.
func TestFlockSharedFS(t *testing.T) {
	m1, m2 := os.Getenv("DLOCK_SHAREDFS_M1"), os.Getenv("DLOCK_SHAREDFS_M2")
	if m1 == "" || m2 == "" || os.Getenv("DLOCK_SHAREDFS_CACHE") == "default" {
		t.Skip("no coherent shared filesystem: eval \"$(scripts/sharedfs.sh up)\" first")
	}
	name := "flock-test-" + strconv.Itoa(os.Getpid())
	f1, f2 := filepath.Join(m1, name), filepath.Join(m2, name)
	t.Cleanup(func() { os.RemoveAll(f1 + ".dlock"); os.Remove(f1) })
	ul := "/usr/bin/flock"
	if exec.Command(ul, "--version").Run() == nil {
		release := flockHold(t, ul, f1)
		err := exec.Command(ul, "-n", f2, "true").Run()
		t.Logf("util-linux flock -n on the second mount while the first holds: exit %d (0: both in)", exitCode(err))
		if exitCode(err) != 0 {
			t.Logf("this filesystem passes flock(2) between its mounts")
		}
		release()
	}
	flockHold(t, flockBin(t), f1)
	if code, _, errOut := flockRun(t, nil, "-n", f2, "true"); code != 1 {
		t.Errorf("dlock's flock -n on the second mount while the first holds: exit %d %s, want 1", code, errOut)
	}
	if code, _, _ := flockRun(t, nil, "-s", "-n", f2, "true"); code != 1 {
		t.Errorf("flock -s on the second mount while the first holds -x: exit %d, want 1", code)
	}
}

// What dlock adds stays on in the personality: a lock taken away while
// the job runs stops the job and exits 76, as dlock run does.
func TestFlockLossStopsTheJob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, ready := filepath.Join(dir, "lock"), filepath.Join(dir, "ready")
	cmd := exec.Command(flockBin(t), "--stale-after", "2", "--grace", "0.2", f, "sh", "-c", `touch "$1"; exec sleep 60`, "sh", ready)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	eventually(t, 10*time.Second, "the job to start", func() bool { return fileExists(ready) })
	if code, out, errB := run(t, "break", "-force", f); code != 0 {
		t.Fatalf("break -force of the flock file: exit %d %s %s", code, out, errB)
	}
	select {
	case err := <-done:
		if exitCode(err) != exitLost || !strings.Contains(errOut.String(), "lost the") {
			t.Fatalf("after the break: %v, stderr %q; want exit 76", err, errOut.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the job still runs 20s after its lock was broken")
	}
}

// flock needs only read access to FILE; dlock's lock needs its directory
// made once beside it, by a user who may: after that every user who may
// read FILE takes the lock.
func TestFlockLockOfAnotherUsersFile(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as another user")
	}
	dir := t.TempDir()
	for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(filepath.Dir(dlockBin(t)), 0o755)
	f := filepath.Join(dir, "shared.lock")
	os.WriteFile(f, nil, 0o644)
	asNobody := func() (int, string) {
		cmd := exec.Command(flockBin(t), "-n", f, "true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return exitCode(err), string(out)
	}
	if code, out := asNobody(); code != exNoInput || !strings.Contains(out, "permission denied in "+dir) || !strings.Contains(out, "Run this flock once as a user who may write there") {
		t.Fatalf("another user's file, no lock directory yet: exit %d %q", code, out)
	}
	if code, _, errOut := flockRun(t, nil, f, "true"); code != 0 {
		t.Fatalf("root's flock: exit %d %s", code, errOut)
	}
	if code, out := asNobody(); code != 0 {
		t.Fatalf("another user's file once its lock directory is made: exit %d %q", code, out)
	}
}
