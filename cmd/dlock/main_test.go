//go:build unix

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests build the dlock binary and run it as real processes with
// POSIX shells and signals (hence unix only). They wait for conditions (files appearing, messages, exits) with deadlines,
// never for fixed delays.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// dlockBin builds the binary once per test run.
func dlockBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dlock-cli-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dlock")
		out, err := exec.Command(goTool(), "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// childHook, set by tests of one system, lets the test binary play a
// part (COMMAND of a dlock run) instead of running the tests.
var childHook func() (int, bool)

func TestMain(m *testing.M) {
	if childHook != nil {
		if code, ok := childHook(); ok {
			os.Exit(code)
		}
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a dlock process running in the background.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	code           int
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, args...)
}

// startEnv starts dlock with env added to the test's environment.
func startEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(dlockBin(t), args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = exitStatus(p.cmd.ProcessState)
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait returns the exit status, failing the test after d.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("dlock %v still runs after %v; stderr:\n%s", p.cmd.Args[1:], d, p.stderr)
		return -1
	}
}

// run runs dlock to completion.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, args...)
	code = p.wait(t, 20*time.Second)
	return code, p.stdout.String(), p.stderr.String()
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type statusJSON struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	Held   bool   `json:"held"`
	Fence  uint64 `json:"fence"`
	Stale  bool   `json:"stale"`
	Dead   bool   `json:"dead"`
	Holder *struct {
		PID            int        `json:"pid"`
		Host           string     `json:"host"`
		Since          *time.Time `json:"since"`
		TimeoutSeconds float64    `json:"timeout_seconds"`
	} `json:"holder"`
	Error string `json:"error"`
}

func status(t *testing.T, paths ...string) (int, []statusJSON, string) {
	t.Helper()
	code, out, errOut := run(t, append([]string{"status", "-json"}, paths...)...)
	var res []statusJSON
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var s statusJSON
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("status -json line %q: %v", sc.Text(), err)
		}
		res = append(res, s)
	}
	return code, res, errOut
}

// holderPID is the pid that the lock records as its holder's.
func holderPID(t *testing.T, lock string) int {
	t.Helper()
	_, st, _ := status(t, lock)
	if len(st) != 1 || !st[0].Held || st[0].Holder == nil {
		t.Fatalf("status of %s: %+v, want held", lock, st)
	}
	return st[0].Holder.PID
}

// holdLock starts "dlock run" holding lock until the test ends, and waits
// until COMMAND runs.
func holdLock(t *testing.T, lock string, flags ...string) *proc {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	args := append(append([]string{"run"}, flags...), lock, "--", "sh", "-c", `touch "$0"; exec sleep 60`, ready)
	p := start(t, args...)
	eventually(t, 10*time.Second, "the holder's COMMAND to start", func() bool { return fileExists(ready) })
	return p
}

func TestExitStatusAndEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lock := filepath.Join(dir, "lock")
	code, out, errOut := run(t, "run", lock, "--", "sh", "-c", `echo "$DLOCK_FENCE $DLOCK_PATH"; exit 3`)
	if code != 3 {
		t.Fatalf("exit %d, want COMMAND's 3; stderr %q", code, errOut)
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[1] != lock {
		t.Fatalf("COMMAND saw %q, want a fence and DLOCK_PATH=%s", out, lock)
	}
	fence1, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || fence1 == 0 {
		t.Fatalf("DLOCK_FENCE=%q", f[0])
	}
	// Without "--", and the fence rises.
	code, out, _ = run(t, "run", lock, "sh", "-c", `echo "$DLOCK_FENCE"`)
	if fence2, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 64); code != 0 || fence2 <= fence1 {
		t.Fatalf("second run: exit %d, fence %q after %d", code, out, fence1)
	}
	// Death by a signal is 128+N, as in a shell.
	if code, _, _ := run(t, "run", lock, "--", "sh", "-c", `kill -KILL $$`); code != 128+9 {
		t.Fatalf("COMMAND killed by SIGKILL: exit %d, want 137", code)
	}
	// The lock is free after each run.
	if _, st, _ := status(t, lock); len(st) != 1 || st[0].Held || !st[0].Exists {
		t.Fatalf("status after runs: %+v", st)
	}
}

func TestUsageAndCommandErrors(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"frob"}, exitUsage, `unknown subcommand "frob"`},
		{[]string{"run"}, exitUsage, "missing PATH"},
		{[]string{"run", lock}, exitUsage, "missing COMMAND"},
		{[]string{"run", "-stale-after", "0s", lock, "true"}, exitUsage, "must be positive"},
		{[]string{"run", "-nope", lock, "true"}, exitUsage, "-nope"},
		{[]string{"run", lock, "--", "no-such-command-dlock-test"}, exitNotFound, "not found"},
		{[]string{"run", lock, "--", "/etc/passwd"}, exitCantExec, "permission denied"},
		{[]string{"status"}, exitUsage, "missing PATH"},
		{[]string{"break"}, exitUsage, "missing PATH"},
		{[]string{"break", lock, lock}, exitUsage, "one PATH"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("dlock %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
	for _, sub := range []string{"run", "hold", "status", "break"} {
		// Help on stdout (dlock run -h | less), each default said once,
		// and nothing else (no "(exit 0)" from hold).
		code, out, errOut := run(t, sub, "-h")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "dlock "+sub) || strings.Contains(out, "for help.") || errOut != "" ||
			strings.HasSuffix(out, "(exit 0)\n") || strings.Contains(out, ") (default") {
			t.Errorf("dlock %s -h: exit %d, stdout %q, stderr %q", sub, code, out, errOut)
		}
		if code, out2, _ := run(t, "help", sub); code != 0 || out2 != out {
			t.Errorf("dlock help %s: exit %d, not what -h prints", sub, code)
		}
	}
	// Bad values are refused, naming what would do.
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"run", "-slots", "0", lock, "true"}, "from 1 to 4096"},
		{[]string{"run", "", "true"}, "PATH is empty"},
		{[]string{"hold", "-pid", "1", ""}, "PATH is empty"},
		{[]string{"status", ""}, "PATH is empty"},
		{[]string{"break", ""}, "PATH is empty"},
	} {
		if code, _, errOut := run(t, tc.args...); code != exitUsage || !strings.Contains(errOut, tc.msg) {
			t.Errorf("dlock %q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, exitUsage, tc.msg)
		}
	}
	cmd := exec.Command(dlockBin(t), "release")
	cmd.Env = append(os.Environ(), "DLOCK_HOLDER=abc")
	if out, err := cmd.CombinedOutput(); exitCode(err) != exitError || !strings.Contains(string(out), `DLOCK_HOLDER="abc" is not a process id`) {
		t.Errorf("DLOCK_HOLDER=abc dlock release: %v %q", err, out)
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "dlock ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	if code, out, _ := run(t, "help"); code != 0 || !strings.Contains(out, "dlock run") {
		t.Errorf("help: exit %d, %q", code, out)
	}
}

func TestBusyStatusBreakAndLoss(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	holder := holdLock(t, lock, "-stale-after", "2s", "-grace", "0.3")
	pid := holderPID(t, lock) // dlock's supervising process holds the lock
	host, _ := os.Hostname()

	// Busy: who holds it, and the exit status asked for.
	code, _, errOut := run(t, "run", "-patience", "0", lock, "--", "true")
	if code != exitBusy || !strings.Contains(errOut, fmt.Sprintf("held by pid %d on host", pid)) || !strings.Contains(errOut, " for ") {
		t.Fatalf("busy lock: exit %d, stderr %q; want %d naming pid %d", code, errOut, exitBusy, pid)
	}
	if code, _, errOut := run(t, "run", "-patience", "100ms", "-conflict-exit", "9", "-q", lock, "--", "true"); code != 9 || errOut != "" {
		t.Fatalf("-conflict-exit 9 -q: exit %d, stderr %q", code, errOut)
	}

	// status -json, with a path that is not a lock: reported after the rest.
	notLock := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notLock, []byte("x"), 0o644)
	free := filepath.Join(t.TempDir(), "free")
	code, st, errOut := status(t, lock, notLock, free)
	if code != exitNotLock || len(st) != 3 || !strings.Contains(errOut, "not a lock") || strings.Count(errOut, "lock directory") != 1 {
		t.Fatalf("status: exit %d, %d objects, stderr %q", code, len(st), errOut)
	}
	if s := st[0]; !s.Held || s.Stale || s.Holder == nil || s.Holder.PID != pid || s.Holder.Host == "" || s.Holder.TimeoutSeconds != 2 || s.Fence == 0 || s.Path != lock {
		t.Fatalf("status of the held lock: %+v %+v", s, s.Holder)
	}
	if host != "" && !strings.HasPrefix(host, st[0].Holder.Host[:1]) {
		t.Errorf("holder host %q, this host %q", st[0].Holder.Host, host)
	}
	if st[1].Error == "" || st[1].Path != notLock {
		t.Fatalf("status of a file: %+v", st[1])
	}
	if s := st[2]; s.Held || s.Exists || s.Holder != nil || s.Error != "" {
		t.Fatalf("status of a missing lock: %+v", s)
	}
	if code, out, _ := run(t, "status", lock); code != exitHeld || !strings.Contains(out, fmt.Sprintf("pid %d", pid)) {
		t.Fatalf("status text of a held lock: exit %d, %q; want %d", code, out, exitHeld)
	}
	// Exit statuses a script branches on: free 0, held 3, not a lock 4.
	for _, tc := range []struct {
		paths []string
		code  int
	}{{[]string{free}, 0}, {[]string{lock}, exitHeld}, {[]string{free, lock}, exitHeld}, {[]string{notLock}, exitNotLock}, {[]string{lock, notLock}, exitNotLock}} {
		if code, out, _ := run(t, append([]string{"status", "-q"}, tc.paths...)...); code != tc.code || out != "" {
			t.Errorf("status -q %q: exit %d, stdout %q; want %d and nothing", tc.paths, code, out, tc.code)
		}
	}

	// break refuses a live lock; -force takes it, and the holder stops
	// COMMAND and exits with the lock-lost status.
	if code, _, errOut := run(t, "break", lock); code != exitBusy || !strings.Contains(errOut, "use -force") {
		t.Fatalf("break of a live lock: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut := run(t, "break", "-force", lock)
	if code != 0 || !strings.Contains(out, "broke the lock") || !strings.Contains(out, "forced") {
		t.Fatalf("break -force: exit %d, %q %q", code, out, errOut)
	}
	if code := holder.wait(t, 10*time.Second); code != exitLost {
		t.Fatalf("holder whose lock was broken: exit %d, want %d; stderr:\n%s", code, exitLost, holder.stderr)
	}
	if e := holder.stderr.String(); !strings.Contains(e, "lost the lock") || !strings.Contains(e, "SIGTERM") || strings.Contains(e, ": lock was lost") {
		t.Fatalf("holder's stderr: %q", e)
	}
	if code, out, _ := run(t, "break", lock); code != 0 || !strings.Contains(out, "nothing to break") {
		t.Fatalf("break of a free lock: exit %d, %q", code, out)
	}
}

func TestLostLockGraceThenKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lock, ready := filepath.Join(dir, "lock"), filepath.Join(dir, "ready")
	// COMMAND ignores SIGTERM: after -grace it gets SIGKILL.
	p := start(t, "run", "-stale-after", "600ms", "-grace", "200ms", lock, "--", "sh", "-c", `trap "" TERM; touch "$0"; while :; do sleep 0.05; done`, ready)
	eventually(t, 10*time.Second, "COMMAND to start", func() bool { return fileExists(ready) })
	if code, _, errOut := run(t, "break", "-force", lock); code != 0 {
		t.Fatalf("break -force: exit %d %q", code, errOut)
	}
	if code := p.wait(t, 10*time.Second); code != exitLost || !strings.Contains(p.stderr.String(), "SIGKILL") {
		t.Fatalf("exit %d, want %d after SIGKILL; stderr:\n%s", code, exitLost, p.stderr)
	}
}

func TestSignalsAreForwarded(t *testing.T) {
	t.Parallel()
	for sig, name := range map[syscall.Signal]string{syscall.SIGTERM: "TERM", syscall.SIGINT: "INT", syscall.SIGHUP: "HUP"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			lock, ready, got := filepath.Join(dir, "lock"), filepath.Join(dir, "ready"), filepath.Join(dir, "got")
			script := `trap 'echo TERM > "$1"; exit 7' TERM; trap 'echo INT > "$1"; exit 7' INT; trap 'echo HUP > "$1"; exit 7' HUP
touch "$0"; while :; do sleep 0.02; done`
			p := start(t, "run", lock, "--", "sh", "-c", script, ready, got)
			eventually(t, 10*time.Second, "COMMAND to start", func() bool { return fileExists(ready) })
			p.cmd.Process.Signal(sig)
			if code := p.wait(t, 10*time.Second); code != 7 {
				t.Fatalf("exit %d, want COMMAND's 7; stderr:\n%s", code, p.stderr)
			}
			b, _ := os.ReadFile(got)
			if strings.TrimSpace(string(b)) != name {
				t.Fatalf("COMMAND trapped %q after %v", b, sig)
			}
			if _, st, _ := status(t, lock); len(st) != 1 || st[0].Held {
				t.Fatalf("lock not released after COMMAND exited: %+v", st)
			}
		})
	}
}

func TestSignalCancelsWait(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "lock")
	holdLock(t, lock)
	pid := holderPID(t, lock)
	for sig, want := range map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143} {
		ran := filepath.Join(t.TempDir(), "ran")
		p := start(t, "run", "-v", lock, "--", "touch", ran)
		eventually(t, 10*time.Second, "the waiter to start waiting", func() bool {
			return strings.Contains(p.stderr.String(), "dlock run: locking")
		})
		p.cmd.Process.Signal(sig)
		if code := p.wait(t, 10*time.Second); code != want {
			t.Fatalf("waiter got %v: exit %d, want %d; stderr:\n%s", sig, code, want, p.stderr)
		}
		if fileExists(ran) {
			t.Fatalf("COMMAND ran after %v cancelled the wait", sig)
		}
	}
	// Nothing left behind: the first holder still holds it, alone.
	_, st, _ := status(t, lock)
	if len(st) != 1 || !st[0].Held || st[0].Holder.PID != pid {
		t.Fatalf("after cancelled waits: %+v", st)
	}
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return runtime.GOOS == "linux" // no /proc entry: gone
	}
	// The state follows the ")" that ends the command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func TestKilledDlockTakesCommandAlong(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lock, pidFile := filepath.Join(dir, "lock"), filepath.Join(dir, "pid")
	p := start(t, "run", "-stale-after", "1m", lock, "--", "sh", "-c", `echo $$ > "$0.tmp"; mv "$0.tmp" "$0"; exec sleep 300`, pidFile)
	var child int
	eventually(t, 10*time.Second, "COMMAND to write its pid", func() bool {
		b, err := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && child > 0
	})
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	// The supervising process that holds the lock stops COMMAND, then
	// releases the lock: free long before its TIMEOUT.
	eventually(t, 10*time.Second, fmt.Sprintf("COMMAND (pid %d) to die with dlock", child), func() bool { return processGone(child) })
	eventually(t, 10*time.Second, "the lock to be released", func() bool {
		_, st, _ := status(t, lock)
		return len(st) == 1 && !st[0].Held
	})
	if code, _, errOut := run(t, "run", "-n", lock, "--", "true"); code != 0 {
		t.Fatalf("taking the lock after dlock was killed: exit %d, %s", code, errOut)
	}
}
