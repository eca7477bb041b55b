package main

// dlock run on Windows, with real processes: the test binary plays dlock
// (DLOCK_TEST_ROLE=dlock) and COMMAND (its first argument "__child"), as
// no Go toolchain is at hand where these run (under Wine, scripts/wine.sh).
// The job is a job object with kill-on-close: COMMAND and what it starts
// die with dlock however dlock ends, and are stopped when the lock is lost.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockdir/dlock"
	"golang.org/x/sys/windows"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__child" {
		os.Exit(child(os.Args[2:]))
	}
	if os.Getenv("DLOCK_TEST_ROLE") == "dlock" {
		os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// child plays COMMAND: "exit N"; "tree FILE": start a grandchild, write
// "CHILD GRANDCHILD" pids to FILE, then sleep; "sleep": sleep.
func child(args []string) int {
	switch args[0] {
	case "exit":
		n, _ := strconv.Atoi(args[1])
		return n
	case "tree":
		self, _ := os.Executable()
		g := exec.Command(self, "__child", "sleep")
		if err := g.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		tmp := args[1] + ".tmp"
		os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d", os.Getpid(), g.Process.Pid)), 0o644)
		os.Rename(tmp, args[1])
		g.Wait()
		return 0
	case "sleep":
		time.Sleep(time.Hour)
	}
	return 1
}

// dlockRun starts "dlock run ARGS..." (the test binary as dlock).
func dlockRun(t *testing.T, args ...string) (*exec.Cmd, *strings.Builder, chan int) {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self, append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), "DLOCK_TEST_ROLE=dlock")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		cmd.Wait()
		done <- cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		done <- -1
	})
	return cmd, &out, done
}

func exitOf(t *testing.T, done chan int, what string) int {
	t.Helper()
	select {
	case code := <-done:
		done <- code
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return 0
	}
}

// The exit statuses of dlock run, as on Unix: COMMAND's own; 127 for a
// COMMAND not found; 75 (or -E's) when the lock stays busy.
func TestRunExitStatusesWindows(t *testing.T) {
	self, _ := os.Executable()
	path := filepath.Join(t.TempDir(), "a.lock")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{path, "--", self, "__child", "exit", "0"}, 0},
		{[]string{path, "--", self, "__child", "exit", "7"}, 7},
		{[]string{path, "--", "no-such-command-dlock-test"}, exitNotFound},
	} {
		_, out, done := dlockRun(t, tc.args...)
		if got := exitOf(t, done, "dlock run"); got != tc.want {
			t.Errorf("dlock run %q: exit %d, want %d; output:\n%s", tc.args, got, tc.want, out)
		}
	}
	holder, err := dlock.New(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-n", path, "--", self, "__child", "exit", "0"}, exitBusy},
		{[]string{"-n", "-E", "9", path, "--", self, "__child", "exit", "0"}, 9},
	} {
		_, out, done := dlockRun(t, tc.args...)
		if got := exitOf(t, done, "dlock run"); got != tc.want || !strings.Contains(out.String(), "busy") {
			t.Errorf("dlock run %q on a busy lock: exit %d, want %d; output:\n%s", tc.args, got, tc.want, out)
		}
	}
}

// waitTree waits for COMMAND of a "tree" job to write its pids.
func waitTree(t *testing.T, file string, done chan int, out *strings.Builder) (child, grandchild int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil {
			if _, err := fmt.Sscan(string(b), &child, &grandchild); err == nil {
				return child, grandchild
			}
		}
		select {
		case code := <-done:
			done <- code // for dlockRun's cleanup
			t.Fatalf("dlock run exited %d before its job started; output:\n%s", code, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("the job did not start; output:\n%s", out)
	return 0, 0
}

// exited reports whether process pid has exited (or never was), waiting
// up to wait for it.
func exited(pid int, wait time.Duration) bool {
	h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return true // no such process
	}
	defer windows.CloseHandle(h)
	ev, _ := windows.WaitForSingleObject(h, uint32(wait/time.Millisecond))
	return ev == windows.WAIT_OBJECT_0
}

// dlock killed without a word (TerminateProcess, as a crash or Task
// Manager does): the job object is closed with dlock's handles, and
// kill-on-close ends COMMAND and the process it started. The lock, held by
// a dead process of this host, is free at once for the next one.
func TestRunJobDiesWithDlock(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	path, pids := filepath.Join(dir, "a.lock"), filepath.Join(dir, "pids")
	cmd, out, done := dlockRun(t, "-stale-after", "30", path, "--", self, "__child", "tree", pids)
	c, g := waitTree(t, pids, done, out)
	if exited(c, 0) || exited(g, 0) {
		t.Fatal("the job's processes are not running")
	}
	// The next holder waits already, polling often.
	next, err := dlock.New(path, dlock.WithPatience(20*time.Second), dlock.WithPollInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		err        error
		jobRunning []int
	}
	got := make(chan result, 1)
	go func() {
		err := next.Lock(context.Background())
		// At once, before anything else: does any of the job still run?
		var running []int
		for _, pid := range []int{c, g} {
			if !exited(pid, 0) {
				running = append(running, pid)
			}
		}
		got <- result{err, running}
	}()
	time.Sleep(50 * time.Millisecond) // (the waiter's first look: not needed for the check, only for a wait to be under way)
	start := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	exitOf(t, done, "dlock to die")
	var r result
	select {
	case r = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the next holder never took the lock of the dead dlock")
	}
	if r.err != nil {
		t.Fatalf("the next holder: %v", r.err)
	}
	t.Logf("the next holder took the lock %v after dlock was killed", time.Since(start).Round(time.Millisecond))
	if len(r.jobRunning) > 0 {
		t.Errorf("the next holder took the lock while the dead dlock's job still ran (pids %v of %d, %d)", r.jobRunning, c, g)
	}
	if !exited(c, 10*time.Second) || !exited(g, 10*time.Second) {
		t.Fatalf("COMMAND (pid %d) or its child (pid %d) outlived dlock: the job object did not kill them", c, g)
	}
	next.Unlock()
}

// The lock lost while the job runs (reclaimed by another, here played by
// renaming its entry away): dlock stops the whole job, COMMAND and its
// child, and exits 76 (lost); by then none of the job runs.
func TestRunStopsJobOnLossWindows(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	path, pids := filepath.Join(dir, "a.lock"), filepath.Join(dir, "pids")
	_, out, done := dlockRun(t, "-stale-after", "1", path, "--", self, "__child", "tree", pids)
	c, g := waitTree(t, pids, done, out)
	st, err := dlock.Inspect(path)
	if err != nil || !st.Held {
		t.Fatalf("Inspect = %+v, %v", st, err)
	}
	// Another process reclaims it: its entry is renamed to a holder of
	// its own (a name dlock never uses).
	names, _ := os.ReadDir(path)
	moved := false
	for _, n := range names {
		if strings.HasPrefix(n.Name(), "held.") {
			if err := os.Rename(filepath.Join(path, n.Name()), filepath.Join(path, "held.99.x")); err != nil {
				t.Fatal(err)
			}
			moved = true
		}
	}
	if !moved {
		t.Fatalf("no held entry in %v", names)
	}
	if code := exitOf(t, done, "dlock to stop the job"); code != exitLost {
		t.Fatalf("dlock run exited %d after losing the lock, want %d; output:\n%s", code, exitLost, out)
	}
	if !exited(c, 0) || !exited(g, 0) {
		t.Fatalf("COMMAND (pid %d) or its child (pid %d) still ran when dlock exited; output:\n%s", c, g, out)
	}
	if !strings.Contains(out.String(), "lost") {
		t.Errorf("dlock did not say it lost the lock:\n%s", out)
	}
}
