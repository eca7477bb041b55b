//go:build unix

package main

import (
	"context"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/internal/backendproto"
)

// These tests run "dlock run fake://DIR" against a real helper process:
// the test binary, started under the name dlock-backend-fake, keeping a
// lock directory DIR. So the protocol, the front process that starts the
// helper, the supervisor that talks to it, and the job's stop on a loss
// are all exercised without a server, deterministically.

// staleFlag is the flag of TIMEOUT (the staleness time).
const staleFlag = "-stale-after"

// fakePIDsEnv names a file the fake helper appends its pid to.
const fakePIDsEnv = "DLOCK_TEST_FAKE_BACKEND_PIDS"

func init() {
	if filepath.Base(os.Args[0]) != "dlock-backend-fake" {
		return
	}
	if f := os.Getenv(fakePIDsEnv); f != "" {
		fh, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err == nil {
			fmt.Fprintln(fh, os.Getpid())
			fh.Close()
		}
	}
	os.Exit(backendproto.Main(func(o backendproto.Options, log *slog.Logger) (dlock.Locker, error) {
		u, err := neturl.Parse(o.URL)
		if err != nil || u.Path == "" {
			return nil, fmt.Errorf("fake backend: %q: want fake:///ABSOLUTE/DIR", backendproto.Redact(o.URL))
		}
		opts := []dlock.Option{dlock.WithTimeout(o.Timeout), dlock.WithPatience(o.Patience), dlock.WithLogger(log)}
		if o.Margin > 0 {
			opts = append(opts, dlock.WithMargin(o.Margin))
		}
		if o.Poll > 0 {
			opts = append(opts, dlock.WithPollInterval(o.Poll))
		}
		l, err := dlock.New(u.Path, opts...)
		if err != nil {
			return nil, err
		}
		return fakeLock{l, l}, nil
	}))
}

// fakeLock is the fake helper's Locker: a lock directory, which can say
// who holds it.
type fakeLock struct {
	dlock.Locker
	l *dlock.Lock
}

func (l fakeLock) Inspect(context.Context) (dlock.Holder, time.Duration, bool, error) {
	st, err := l.l.Status()
	return st.Holder, st.Age, st.Held, err
}

// fakeBackend makes the directory where the fake helper is found on PATH,
// and returns the environment that finds it and records its pids.
func fakeBackend(t *testing.T) (env []string, pids string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "dlock-backend-fake")); err != nil {
		t.Fatal(err)
	}
	pids = filepath.Join(t.TempDir(), "helper-pids")
	return []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), fakePIDsEnv + "=" + pids}, pids
}

// helperPID waits for the (first) fake helper to record its pid.
func helperPID(t *testing.T, pids string) int {
	t.Helper()
	var pid int
	eventually(t, 10*time.Second, "the helper to start", func() bool {
		b, _ := os.ReadFile(pids)
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return false
		}
		pid, _ = strconv.Atoi(f[0])
		return pid > 0
	})
	return pid
}

func TestBackendRun(t *testing.T) {
	t.Parallel()
	env, pids := fakeBackend(t)
	dir := filepath.Join(t.TempDir(), "lock")
	url := "fake://me:secret@" + dir
	p := startEnv(t, env, "run", url, "--", "sh", "-c", `echo "fence=$DLOCK_FENCE path=$DLOCK_PATH"; env | grep -c DLOCK_BACKEND || true`)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("dlock run %s: exit %d; stderr:\n%s", url, code, p.stderr)
	}
	out := p.stdout.String()
	var fence uint64
	fmt.Sscanf(out, "fence=%d ", &fence)
	if fence == 0 || !strings.Contains(out, " path=fake://me:xxxxx@"+dir+"\n") || strings.Contains(out, "secret") {
		t.Errorf("the job's environment: %q; want a fence and the URL without its password", out)
	}
	if !strings.HasSuffix(out, "0\n") {
		t.Errorf("the job sees the helper's pipes: %q", out)
	}
	// Released: the directory is free, and the helper has exited.
	if st, err := dlock.Inspect(dir); err != nil || st.Held {
		t.Errorf("after the run, %s: %v, %v; want free", dir, st, err)
	}
	pid := helperPID(t, pids)
	if processAlive(pid) {
		t.Errorf("the helper %d still runs after dlock exited", pid)
	}
	// Fences rise.
	p = startEnv(t, env, "run", url, "--", "sh", "-c", `echo "fence=$DLOCK_FENCE"`)
	code := p.wait(t, 20*time.Second)
	var next uint64
	fmt.Sscanf(p.stdout.String(), "fence=%d", &next)
	if code != 0 || next <= fence {
		t.Errorf("second run: exit %d, %q; want a fence above %d", code, p.stdout, fence)
	}
}

func TestBackendBusy(t *testing.T) {
	t.Parallel()
	env, _ := fakeBackend(t)
	dir := filepath.Join(t.TempDir(), "lock")
	ready := filepath.Join(t.TempDir(), "ready")
	// A lock directory held by a plain dlock run: the fake backend keeps
	// the same directory, so it is busy for it.
	holder := start(t, "run", dir, "--", "sh", "-c", "touch "+ready+"; sleep 60")
	eventually(t, 10*time.Second, "the holder", func() bool { return fileExists(ready) })
	url := "fake://me:secret@" + dir
	for _, c := range []struct {
		flags []string
		want  int
	}{
		{[]string{"-n"}, exitBusy},
		{[]string{"-n", "-E", "3"}, 3},
		{[]string{"-w", "0.3"}, exitBusy},
	} {
		p := startEnv(t, env, append(append([]string{"run"}, c.flags...), url, "--", "true")...)
		code := p.wait(t, 20*time.Second)
		errOut := p.stderr.String()
		if code != c.want || !strings.Contains(errOut, "is busy: held by pid "+strconv.Itoa(holderPID(t, dir))) || strings.Contains(errOut, "secret") {
			t.Errorf("dlock run %v on a busy lock: exit %d (want %d); stderr:\n%s", c.flags, code, c.want, errOut)
		}
	}
	p := startEnv(t, env, "run", "-q", "-n", url, "--", "true")
	if code := p.wait(t, 20*time.Second); code != exitBusy || p.stderr.String() != "" {
		t.Errorf("-q -n on a busy lock: exit %d, stderr %q", code, p.stderr)
	}
	holder.cmd.Process.Signal(syscall.SIGTERM)
	holder.wait(t, 20*time.Second)
}

// startBackendJob starts a dlock run of a job that records its pid and
// sleeps; it returns the run, the helper's pid and the job's.
func startBackendJob(t *testing.T, flags ...string) (p *proc, helper, job int, dir string) {
	t.Helper()
	env, pids := fakeBackend(t)
	dir = filepath.Join(t.TempDir(), "lock")
	jobPID := filepath.Join(t.TempDir(), "job")
	p = startEnv(t, env, append(append([]string{"run"}, flags...), "fake://"+dir, "--", "sh", "-c", "echo $$ > "+jobPID+".t; mv "+jobPID+".t "+jobPID+"; exec sleep 60")...)
	eventually(t, 10*time.Second, "the job", func() bool { return fileExists(jobPID) })
	b, _ := os.ReadFile(jobPID)
	job, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	return p, helperPID(t, pids), job, dir
}

// expectLost checks that the run stopped its job within d, and exited 76.
func expectLost(t *testing.T, p *proc, job int, start time.Time, d time.Duration, why string) {
	t.Helper()
	eventually(t, 20*time.Second, "the job to be stopped", func() bool { return !processAlive(job) })
	took := time.Since(start)
	code := p.wait(t, 20*time.Second)
	t.Logf("%s: the job was gone after %s, dlock exited %d after %s; stderr:\n%s", why, took.Round(time.Millisecond), code, time.Since(start).Round(time.Millisecond), p.stderr)
	if code != exitLost {
		t.Errorf("%s: exit %d, want %d", why, code, exitLost)
	}
	if !strings.Contains(p.stderr.String(), "lost the lock") {
		t.Errorf("%s: dlock did not say it lost the lock", why)
	}
	if processAlive(job) {
		t.Errorf("%s: the job %d still runs", why, job)
	}
	if took > d {
		t.Errorf("%s: the job was stopped %s after, want within %s", why, took, d)
	}
}

// The helper killed: nobody refreshes the lease, so the lock is lost at
// once, and the job stopped.
func TestBackendHelperKilled(t *testing.T) {
	t.Parallel()
	p, helper, job, _ := startBackendJob(t, staleFlag, "10", "-grace", "0.5")
	start := time.Now()
	syscall.Kill(helper, syscall.SIGKILL)
	expectLost(t, p, job, start, 5*time.Second, "helper killed")
}

// The helper's Locker loses the lock (the directory is broken): the
// helper says so at once, and the job is stopped.
func TestBackendLostReported(t *testing.T) {
	t.Parallel()
	p, _, job, dir := startBackendJob(t, staleFlag, "10", "-grace", "0.5")
	if code, out, errOut := run(t, "break", "-force", dir); code != 0 {
		t.Fatalf("dlock break: %d %s %s", code, out, errOut)
	}
	expectLost(t, p, job, time.Now(), 10*time.Second, "lock broken")
}

// The helper stopped (SIGSTOP): its silence is a loss, within half the
// reaction slack.
func TestBackendHelperStopped(t *testing.T) {
	t.Parallel()
	p, helper, job, _ := startBackendJob(t, staleFlag, "5", "-grace", "0.5")
	start := time.Now()
	syscall.Kill(helper, syscall.SIGSTOP)
	defer syscall.Kill(helper, syscall.SIGCONT)
	// MARGIN is 0.5 s + 0.5 s: the job must be gone well within it.
	expectLost(t, p, job, start, 3*time.Second, "helper stopped")
	if !strings.Contains(p.stderr.String(), "said nothing for") {
		t.Errorf("dlock does not say the helper fell silent")
	}
}

// A signal while dlock waits cancels the wait; the helper gives up and
// exits, and releases nothing it did not hold.
func TestBackendSignalWhileWaiting(t *testing.T) {
	t.Parallel()
	env, pids := fakeBackend(t)
	dir := filepath.Join(t.TempDir(), "lock")
	ready := filepath.Join(t.TempDir(), "ready")
	holder := start(t, "run", dir, "--", "sh", "-c", "touch "+ready+"; sleep 60")
	eventually(t, 10*time.Second, "the holder", func() bool { return fileExists(ready) })
	p := startEnv(t, env, "run", "-v", "fake://"+dir, "--", "true")
	helper := helperPID(t, pids)
	eventually(t, 10*time.Second, "the waiter to wait", func() bool { return strings.Contains(p.stderr.String(), "locking") })
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Errorf("SIGTERM while waiting: exit %d, want 143; stderr:\n%s", code, p.stderr)
	}
	eventually(t, 10*time.Second, "the helper to exit", func() bool { return !processAlive(helper) })
	if st, err := dlock.Inspect(dir); err != nil || !st.Held || st.Holder.PID != holderPID(t, dir) {
		t.Errorf("the first holder's lock after the waiter gave up: %v %v", st, err)
	}
	holder.cmd.Process.Signal(syscall.SIGTERM)
	holder.wait(t, 20*time.Second)
}

func TestBackendMissingHelper(t *testing.T) {
	t.Parallel()
	code, _, errOut := run(t, "run", "nosuch://u:secret@host/x", "--", "true")
	if code != exitError || !strings.Contains(errOut, "dlock-backend-nosuch") || strings.Contains(errOut, "secret") {
		t.Errorf("a URL without a helper: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, "run", "-s", "postgres://db/app#migrate", "--", "true")
	if code == 0 || !strings.Contains(errOut, "-s, -x and -slots are for lock directories") {
		t.Errorf("-s with a URL: exit %d, stderr %q", code, errOut)
	}
}

func TestBackendScheme(t *testing.T) {
	for path, want := range map[string]string{
		"postgres://db/app#m": "postgres", "postgresql://db": "postgres", "ETCD://h:2379/k": "etcd",
		"fake:///tmp/x": "fake", "/var/lock/x": "", "./a://b": "", "1x://y": "", "://x": "", "c:\\x": "",
	} {
		if got := backendScheme(path); got != want {
			t.Errorf("backendScheme(%q) = %q, want %q", path, got, want)
		}
	}
}

// dlock hold and dlock release with a URL: the background holder starts
// the helper itself.
func TestBackendHold(t *testing.T) {
	t.Parallel()
	env, pids := fakeBackend(t)
	dir := filepath.Join(t.TempDir(), "lock")
	script := `out=$("$DLOCK" hold -n -pid $$ "$URL") || exit 9
eval "$out"
echo "fence=$DLOCK_FENCE path=$DLOCK_PATH"
"$DLOCK" status -q "$DIR"; echo "status=$?"
"$DLOCK" release || exit 8
"$DLOCK" status -q "$DIR"; echo "status=$?"`
	sh := exec.Command("sh", "-c", script)
	sh.Env = append(append(os.Environ(), env...), "DLOCK="+dlockBin(t), "URL=fake://"+dir, "DIR="+dir)
	var stderr syncBuffer
	sh.Stderr = &stderr
	b, err := sh.Output()
	if err != nil {
		t.Fatalf("the script: %v; stdout:\n%s\nstderr:\n%s", err, b, stderr.String())
	}
	out := string(b)
	if !strings.Contains(out, " path=fake://"+dir+"\n") || strings.Contains(out, "fence= ") || !strings.Contains(out, "status=3\nstatus=0\n") {
		t.Errorf("hold, status (held: 3), release, status (free: 0):\n%s", out)
	}
	pid := helperPID(t, pids) // it ends at the end of its input, when the holder has exited
	eventually(t, 10*time.Second, "the helper of the released hold to exit", func() bool { return !processAlive(pid) })
}

// dlock status of a URL asks a helper of its own; break refuses; neither
// shows the password.
func TestBackendStatusBreak(t *testing.T) {
	t.Parallel()
	env, _ := fakeBackend(t)
	dir := filepath.Join(t.TempDir(), "lock")
	url := "fake://me:secret@" + dir
	statusOf := func(args ...string) (int, string) {
		p := startEnv(t, env, append([]string{"status"}, append(args, url)...)...)
		code := p.wait(t, 20*time.Second)
		if strings.Contains(p.stdout.String()+p.stderr.String(), "secret") {
			t.Errorf("status shows the password: %s %s", p.stdout, p.stderr)
		}
		return code, p.stdout.String() + p.stderr.String()
	}
	if code, out := statusOf(); code != 0 || out != "fake://me:xxxxx@"+dir+": free\n" {
		t.Errorf("status of a free URL lock: exit %d, %q", code, out)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	holder := startEnv(t, env, "run", url, "--", "sh", "-c", "touch "+ready+"; sleep 60")
	eventually(t, 10*time.Second, "the holder", func() bool { return fileExists(ready) })
	if code, out := statusOf(); code != exitHeld || !strings.Contains(out, ": held by pid ") {
		t.Errorf("status of a held URL lock: exit %d, %q", code, out)
	}
	if code, out := statusOf("-json"); code != exitHeld || !strings.Contains(out, `"held":true`) {
		t.Errorf("status -json of a held URL lock: exit %d, %q", code, out)
	}
	code, out, errOut := run(t, "break", "-force", url)
	if code != exitError || !strings.Contains(errOut, "lock directories only") || strings.Contains(out+errOut, "secret") {
		t.Errorf("break of a URL: exit %d, %q %q", code, out, errOut)
	}
	holder.cmd.Process.Signal(syscall.SIGTERM)
	holder.wait(t, 20*time.Second)
}

// The dlock process the user started killed (SIGKILL): the supervisor
// stops the job and releases through the helper, which then exits.
func TestBackendFrontKilled(t *testing.T) {
	t.Parallel()
	p, helper, job, dir := startBackendJob(t, staleFlag, "10", "-grace", "0.5")
	p.cmd.Process.Signal(syscall.SIGKILL)
	eventually(t, 20*time.Second, "the job to be stopped", func() bool { return !processAlive(job) })
	eventually(t, 20*time.Second, "the helper to exit", func() bool { return !processAlive(helper) })
	if st, err := dlock.Inspect(dir); err != nil || st.Held {
		t.Errorf("after the front was killed and the job stopped: %v, %v; want released", st, err)
	}
}

// COMMAND exits and leaves a process of its job behind: dlock returns
// COMMAND's status while the leftover holds the lock (as flock does), and
// a caller reading dlock's output and errors is done then too: the helper
// holds none of the caller's descriptors. The lock is released when the
// leftover is gone.
func TestBackendLeftoversOutput(t *testing.T) {
	t.Parallel()
	env, _ := fakeBackend(t)
	dir := filepath.Join(t.TempDir(), "lock")
	stop := filepath.Join(t.TempDir(), "stop")
	start := time.Now()
	sh := exec.Command("sh", "-c", `"$DLOCK" run -v "$URL" -- sh -c 'while [ ! -e "$STOP" ]; do sleep 0.05; done >/dev/null 2>&1 & echo out' 2>&1`)
	sh.Env = append(append(os.Environ(), env...), "DLOCK="+dlockBin(t), "URL=fake://"+dir, "STOP="+stop)
	b, err := sh.Output()
	took := time.Since(start)
	if err != nil || !strings.Contains(string(b), "out\n") || took > 10*time.Second {
		t.Errorf("$(dlock run URL -- COMMAND with a leftover 2>&1): %v after %s; output:\n%s", err, took, b)
	}
	if !strings.Contains(string(b), "dlock run: locking") {
		t.Errorf("the -v log did not come through: %s", b)
	}
	if st, err := dlock.Inspect(dir); err != nil || !st.Held {
		t.Errorf("with the leftover running: %v %v; want held", st, err)
	}
	os.WriteFile(stop, nil, 0o644)
	eventually(t, 20*time.Second, "the lock to be released after the leftover", func() bool {
		st, err := dlock.Inspect(dir)
		return err == nil && !st.Held
	})
}
