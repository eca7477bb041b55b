//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	childHook = func() (int, bool) {
		if f := os.Getenv(checkerEnv); f != "" {
			return runChecker(f), true
		}
		return 0, false
	}
}

// These tests run a job with every kind of descendant a cron script has,
// stop it in each way dlock can be stopped, and check, from inside the
// next holder's COMMAND at its very start, that no process of the old job
// is alive.

// jobScript starts, and records the pid of (one per line in $PIDS, as
// /proc shows it, so that it means the same inside a pid namespace):
// itself; a grandchild; a background job (cmd &); a nohup'd process; a
// daemon made with setsid and a double fork. Then it touches $READY and
// sleeps. Each process ignores nothing: SIGTERM stops it.
const jobScript = `
export REC='read -r p _ < /proc/self/stat; echo $p >> "$PIDS"'
eval "$REC"
sh -c 'eval "$REC"; sh -c '\''eval "$REC"; exec sleep 300'\'' & wait' &
sh -c 'eval "$REC"; exec sleep 300' &
nohup sh -c 'eval "$REC"; exec sleep 300' >/dev/null 2>&1 &
setsid sh -c 'sh -c '\''eval "$REC"; exec sleep 300'\'' &' </dev/null >/dev/null 2>&1
while [ "$(wc -l < "$PIDS")" -lt 6 ]; do sleep 0.01; done
touch "$READY"
exec sleep 300
`

// jobProcs is the number of pids jobScript records.
const jobProcs = 6

// procStart is the start time of pid (clock ticks after boot), or 0 if it
// is gone or a zombie.
func procStart(pid int) uint64 {
	p, ok := readProc(pid)
	if !ok || p.zombie {
		return 0
	}
	return p.start
}

// recordJob waits for the job's pids and records pid and start time of
// each in file, for the checker.
func recordJob(t *testing.T, pidsFile, ready, file string) []procInfo {
	t.Helper()
	eventually(t, 20*time.Second, "the job to start all its processes", func() bool { return fileExists(ready) })
	b, err := os.ReadFile(pidsFile)
	if err != nil {
		t.Fatal(err)
	}
	var procs []procInfo
	var out strings.Builder
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		start := procStart(pid)
		if start == 0 {
			t.Fatalf("job process %d is gone already", pid)
		}
		procs = append(procs, procInfo{pid: pid, start: start})
		fmt.Fprintf(&out, "%d %d\n", pid, start)
	}
	if len(procs) != jobProcs {
		t.Fatalf("job recorded %d pids, want %d: %q", len(procs), jobProcs, b)
	}
	t.Cleanup(func() { // whatever happened, leave nothing behind
		for _, p := range procs {
			if procStart(p.pid) == p.start {
				syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
	if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return procs
}

// checkerEnv makes the test binary, run as COMMAND, check the processes
// listed in the file: see TestMain.
const checkerEnv = "DLOCK_CLI_TEST_CHECK"

// runChecker is COMMAND of the next holder: it reports, at its start,
// which recorded processes are still alive, and exits 1 if any is.
func runChecker(file string) int {
	f, err := os.Open(file)
	if err != nil {
		fmt.Println(err)
		return 2
	}
	defer f.Close()
	alive := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var pid int
		var start uint64
		fmt.Sscan(sc.Text(), &pid, &start)
		if procStart(pid) == start {
			fmt.Printf("job process %d still alive when the next holder started\n", pid)
			alive++
		}
	}
	fmt.Printf("checked at %s: %d alive\n", time.Now().Format("15:04:05.000000"), alive)
	if alive > 0 {
		return 1
	}
	return 0
}

// nextHolder starts a queued waiter whose COMMAND checks the old job.
func nextHolder(t *testing.T, lock, recorded string, flags ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := startEnv(t, []string{checkerEnv + "=" + recorded}, append(append([]string{"run", "-v"}, flags...), lock, "--", exe)...)
	eventually(t, 10*time.Second, "the next holder to wait", func() bool { return strings.Contains(p.stderr.String(), "dlock run: locking") })
	return p
}

// startJobRun starts "dlock run" of jobScript and waits for all its processes.
func startJobRun(t *testing.T, lock string, flags ...string) (*proc, []procInfo, string) {
	t.Helper()
	dir := t.TempDir()
	pids, ready, recorded := filepath.Join(dir, "pids"), filepath.Join(dir, "ready"), filepath.Join(dir, "recorded")
	os.WriteFile(pids, nil, 0o644)
	p := startEnv(t, []string{"PIDS=" + pids, "READY=" + ready}, append(append([]string{"run"}, flags...), lock, "--", "sh", "-c", jobScript)...)
	procs := recordJob(t, pids, ready, recorded)
	return p, procs, recorded
}

// expectAllGone checks the next holder's verdict.
func expectAllGone(t *testing.T, next *proc, start time.Time) {
	t.Helper()
	code := next.wait(t, 30*time.Second)
	t.Logf("next holder's COMMAND ran %s after the event: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(next.stdout.String()))
	if code != 0 {
		t.Fatalf("next holder: exit %d; stdout:\n%s\nstderr:\n%s", code, next.stdout, next.stderr)
	}
}

func TestJobDlockKilled(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	p, _, recorded := startJobRun(t, lock, "-stale-after", "30")
	next := nextHolder(t, lock, recorded)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGKILL)
	expectAllGone(t, next, start)
}

func TestJobSIGTERM(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	p, _, recorded := startJobRun(t, lock, "-v", "-stale-after", "30")
	if !strings.Contains(p.stderr.String(), "child subreaper") {
		t.Errorf("-v does not name the mechanism: %s", p.stderr)
	}
	next := nextHolder(t, lock, recorded)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Errorf("dlock after SIGTERM: exit %d, want COMMAND's 143; stderr:\n%s", code, p.stderr)
	}
	expectAllGone(t, next, start)
}

func TestJobLockBroken(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	p, procs, recorded := startJobRun(t, lock, "-stale-after", "3", "-grace", "0.5")
	next := nextHolder(t, lock, recorded)
	start := time.Now()
	if code, out, errOut := run(t, "break", "-force", lock); code != 0 {
		t.Fatalf("break -force: exit %d %q %q", code, out, errOut)
	}
	t.Logf("break -force returned after %s", time.Since(start).Round(time.Millisecond))
	if code := p.wait(t, 20*time.Second); code != exitLost {
		t.Errorf("broken holder: exit %d, want %d; stderr:\n%s", code, exitLost, p.stderr)
	}
	for _, q := range procs {
		if procStart(q.pid) == q.start {
			t.Errorf("job process %d outlived its dlock, whose lock was broken", q.pid)
		}
	}
	expectAllGone(t, next, start)
}

func TestJobOutlivesCommand(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	dir := t.TempDir()
	gone, release := filepath.Join(dir, "bg"), filepath.Join(dir, "release")
	// COMMAND exits at once, and so does dlock, with its status, as
	// flock does; its background child holds the lock until the test
	// lets it go.
	p := start(t, "run", lock, "--", "sh", "-c", `(while [ ! -e "$1" ]; do sleep 0.01; done; touch "$2") >/dev/null 2>&1 & exit 5`, "sh", release, gone)
	if code := p.wait(t, 10*time.Second); code != 5 {
		t.Fatalf("exit %d, want COMMAND's 5 at once", code)
	}
	if _, st, _ := status(t, lock); len(st) != 1 || !st[0].Held || fileExists(gone) {
		t.Fatalf("after COMMAND exited, with its child running: %+v, want the lock held", st)
	}
	if code, _, _ := run(t, "run", "-n", lock, "--", "true"); code != exitBusy {
		t.Fatalf("lock taken while the job's child ran: exit %d", code)
	}
	os.WriteFile(release, nil, 0o644)
	eventually(t, 10*time.Second, "the lock to be released after the job's last process", func() bool {
		_, st, _ := status(t, lock)
		return len(st) == 1 && !st[0].Held
	})
	if !fileExists(gone) {
		t.Fatal("the lock was released before the job's last process exited")
	}

	// -stop-leftovers: the child is stopped when COMMAND exits.
	p = start(t, "run", "-stop-leftovers", "-grace", "5", lock, "--", "sh", "-c", `sleep 300 & echo $! > "$1"; exit 0`, "sh", filepath.Join(dir, "pid"))
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("-stop-leftovers: exit %d; stderr:\n%s", code, p.stderr)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 || procStart(pid) != 0 {
		t.Fatalf("-stop-leftovers: background child %q still runs", b)
	}
}

func TestJobPidNamespace(t *testing.T) {
	t.Parallel()
	if err := exec.Command("unshare", "-Upr", "--fork", "true").Run(); err != nil && os.Geteuid() != 0 {
		t.Skipf("no pid namespaces here for this user: %v", err)
	}
	lock := filepath.Join(t.TempDir(), "lock")
	p, _, recorded := startJobRun(t, lock, "-v", "-pidns", "-stale-after", "2")
	eventually(t, 10*time.Second, "-v to name the mechanism", func() bool { return strings.Contains(p.stderr.String(), "pid namespace") })
	next := nextHolder(t, lock, recorded)
	// The supervisor, init of the namespace, killed: the kernel kills
	// the job before its death is seen; a waiter outside sees the holder
	// as on another host and waits for TIMEOUT.
	sup := supervisorOf(t, p.cmd.Process.Pid)
	start := time.Now()
	syscall.Kill(sup, syscall.SIGKILL)
	expectAllGone(t, next, start)
}

func TestJobPidNamespaceUnprivileged(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("run as root, to run dlock as another user")
	}
	const nobody = 65534
	if err := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "unshare", "-Upr", "--fork", "true").Run(); err != nil {
		t.Skipf("no unprivileged user namespaces here: %v", err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(filepath.Dir(dlockBin(t)), 0o755)
	cmd := exec.Command(dlockBin(t), "run", "-v", "-pidns", filepath.Join(dir, "lock"), "--", "sh", "-c", "id -u; id -g")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != "65534\n65534\n" || !strings.Contains(stderr.String(), "pid namespace") {
		t.Fatalf("-pidns as uid %d: %v, stdout %q, stderr:\n%s", nobody, err, out, stderr.String())
	}
}

// supervisorOf is the supervising child of the front process pid.
func supervisorOf(t *testing.T, pid int) int {
	t.Helper()
	for _, p := range descendants(pid) {
		if p.ppid == pid {
			return p.pid
		}
	}
	t.Fatalf("no supervisor under dlock %d", pid)
	return 0
}

func TestJobSupervisorKilled(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	p, procs, recorded := startJobRun(t, lock, "-stale-after", "30", "-grace", "1")
	next := nextHolder(t, lock, recorded)
	// The supervisor, which holds the lock, SIGKILLed: its orphans go to
	// the front process, which stops them; the lock is free at once for
	// this host meanwhile (the window that -pidns closes).
	sup := supervisorOf(t, p.cmd.Process.Pid)
	start := time.Now()
	syscall.Kill(sup, syscall.SIGKILL)
	code := next.wait(t, 30*time.Second)
	t.Logf("without -pidns, next holder's COMMAND %s after the supervisor's SIGKILL: exit %d: %s",
		time.Since(start).Round(time.Millisecond), code, strings.TrimSpace(next.stdout.String()))
	if code := p.wait(t, 20*time.Second); code != 128+int(syscall.SIGKILL) {
		t.Errorf("front: exit %d, want the supervisor's 137; stderr:\n%s", code, p.stderr)
	}
	for _, q := range procs {
		if procStart(q.pid) == q.start {
			t.Errorf("job process %d outlived both dlock processes", q.pid)
		}
	}
}

// TestJobDeadline freezes the holder's view of the lock (a read-only bind
// mount in its own mount namespace: every refresh fails, as on a dead
// mount) while a waiter sees the real directory: the holder is told at its
// deadline, MARGIN = grace + slack before TIMEOUT, and its job must be dead
// before the waiter takes the lock over.
func TestJobDeadline(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs unshare and nsenter (util-linux)")
	}
	dir := t.TempDir()
	real, view := filepath.Join(dir, "real"), filepath.Join(dir, "view")
	os.Mkdir(real, 0o755)
	os.Mkdir(view, 0o755)
	pids, ready, recorded := filepath.Join(dir, "pids"), filepath.Join(dir, "ready"), filepath.Join(dir, "recorded")
	os.WriteFile(pids, nil, 0o644)
	p := &proc{cmd: exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" "$2" && exec "$3" run -v -stale-after 3 -grace 0.5 "$2/lock" -- sh -c "$4"`, "sh", real, view, dlockBin(t), jobScript),
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "PIDS="+pids, "READY="+ready)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); p.code = exitStatus(p.cmd.ProcessState); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	recordJob(t, pids, ready, recorded)
	next := nextHolder(t, filepath.Join(real, "lock"), recorded)
	frozen := time.Now()
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(p.cmd.Process.Pid), "-m", "mount", "-o", "remount,bind,ro", view).CombinedOutput(); err != nil {
		t.Fatalf("making the holder's view read-only: %v %s", err, out)
	}
	code := p.wait(t, 30*time.Second)
	told := -1 * time.Second
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(line, "stopping the job") && strings.Contains(line, "lost the lock") {
			if i := strings.Index(line, "time="); i >= 0 {
				if at, err := time.Parse(time.RFC3339Nano, strings.Fields(line[i+5:])[0]); err == nil {
					told = at.Sub(frozen)
				}
			}
		}
	}
	expectAllGone(t, next, frozen)
	t.Logf("holder frozen at 0; told (stopping its job) at %s; holder exit %d; TIMEOUT 3s, MARGIN 0.8s", told.Round(time.Millisecond), code)
	if code != exitLost {
		t.Errorf("holder whose refreshes failed: exit %d, want %d; stderr:\n%s", code, exitLost, p.stderr)
	}
}

// TestJobCgroupIsRemoved: where dlock may make cgroups (as root), the
// job's cgroup is removed once the job is gone (after the lock's
// release, before dlock exits).
func TestJobCgroupIsRemoved(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	code, _, errOut := run(t, "run", "-v", lock, "--", "sh", "-c", "exit 3")
	if code != 3 {
		t.Fatalf("exit %d, want COMMAND's 3; stderr:\n%s", code, errOut)
	}
	_, rest, found := strings.Cut(errOut, " + cgroup ")
	if !found {
		t.Skip("the job got no cgroup here (not root, or no cgroup v2)")
	}
	dir := strings.Fields(strings.Trim(rest, `"`))[0]
	dir = strings.TrimSuffix(dir, `"`)
	if !strings.Contains(filepath.Base(dir), "dlock-run-") {
		t.Fatalf("cgroup %q: not a job's cgroup; stderr:\n%s", dir, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the job's cgroup %s is still there after dlock exited (%v)", dir, err)
	}
}
