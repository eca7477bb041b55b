package main

// dlock hold and release on Windows, with real processes: the holder keeps
// the lock while the watched process lives, releases when it exits, and
// dlock release asks it to release before that.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockdir/dlock"
)

// sleeper starts a process for the lock to last the life of.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	self, _ := os.Executable()
	c := exec.Command(self, "__child", "sleep")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// dlockCmd runs dlock ARGS to the end (the test binary as dlock), with env added.
func dlockCmd(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	self, _ := os.Executable()
	c := exec.Command(self, args...)
	c.Env = append(append(os.Environ(), "DLOCK_TEST_ROLE=dlock"), env...)
	// stderr to a file: the holder, left running, keeps it (a pipe would
	// never end, and Run would wait for it).
	errFile, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	var out strings.Builder
	c.Stdout, c.Stderr = &out, errFile
	c.Run()
	errOut, _ := os.ReadFile(errFile.Name())
	return out.String(), string(errOut), c.ProcessState.ExitCode()
}

var holderRE = regexp.MustCompile(`\$env:DLOCK_HOLDER='(\d+)'`)

// hold runs dlock hold for process pid, and returns the holder's pid.
func hold(t *testing.T, pid int, path string, flags ...string) int {
	t.Helper()
	out, errOut, code := dlockCmd(t, nil, append(append([]string{"hold"}, flags...), "-pid", strconv.Itoa(pid), path)...)
	m := holderRE.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("dlock hold: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(out, "$env:DLOCK_PATH=") || !strings.Contains(out, "$env:DLOCK_FENCE=") {
		t.Errorf("dlock hold printed %q, want PowerShell assignments of DLOCK_PATH, DLOCK_FENCE and DLOCK_HOLDER", out)
	}
	holder, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { terminate(holder) })
	return holder
}

func heldBy(t *testing.T, path string) (bool, int) {
	t.Helper()
	st, err := dlock.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Held, st.Holder.PID
}

// The lock lasts the watched process's life: held by the holder while it
// runs, free once it exits; busy for another hold meanwhile.
func TestHoldForAProcessWindows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.lock")
	s := sleeper(t)
	holder := hold(t, s.Process.Pid, path)
	if held, pid := heldBy(t, path); !held || pid != holder {
		t.Fatalf("after dlock hold: held %v by pid %d, want by the holder %d", held, pid, holder)
	}
	other := sleeper(t)
	if out, _, code := dlockCmd(t, nil, "hold", "-n", "-pid", strconv.Itoa(other.Process.Pid), path); code != exitBusy {
		t.Errorf("a second dlock hold -n: exit %d (%q), want %d", code, out, exitBusy)
	}
	s.Process.Kill()
	s.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if held, _ := heldBy(t, path); !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock is still held 20 s after the process it was held for exited")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !exited(holder, 10*time.Second) {
		t.Error("the holder still runs after releasing")
	}
}

// dlock release asks the holder (DLOCK_HOLDER) to release, and returns
// once the lock is free; the process it was held for runs on.
func TestReleaseWindows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.lock")
	s := sleeper(t)
	holder := hold(t, s.Process.Pid, path)
	abs, _ := filepath.Abs(path)
	_, errOut, code := dlockCmd(t, []string{"DLOCK_HOLDER=" + strconv.Itoa(holder), "DLOCK_PATH=" + abs}, "release")
	if code != 0 {
		t.Fatalf("dlock release: exit %d: %s", code, errOut)
	}
	if held, _ := heldBy(t, path); held {
		t.Fatal("the lock is still held after dlock release returned")
	}
	if !exited(holder, 0) {
		t.Error("the holder still runs after dlock release returned")
	}
	if exited(s.Process.Pid, 0) {
		t.Error("dlock release stopped the process the lock was held for")
	}
}
