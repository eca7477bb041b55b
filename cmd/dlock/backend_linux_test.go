//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock"
)

// Tests of dlock run URL that find the supervisor as the job's parent
// (readProc: Linux's /proc).

// dlock's supervisor paused (SIGSTOP) for four times the helper's silence
// window: its own pause is not the helper's silence, and the run goes on.
func TestBackendSupervisorPaused(t *testing.T) {
	t.Parallel()
	env, _ := fakeBackend(t)
	dir := filepath.Join(t.TempDir(), "lock")
	tmp := t.TempDir()
	jobPID, release := filepath.Join(tmp, "job"), filepath.Join(tmp, "release")
	p := startEnv(t, env, "run", staleFlag, "5", "fake://"+dir, "--", "sh", "-c",
		"echo $$ > "+jobPID+".t; mv "+jobPID+".t "+jobPID+"; while [ ! -e "+release+" ]; do sleep 0.02; done")
	eventually(t, 10*time.Second, "the job", func() bool { return fileExists(jobPID) })
	b, _ := os.ReadFile(jobPID)
	job, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	info, ok := readProc(job)
	if !ok {
		t.Fatalf("no job %d", job)
	}
	sup := info.ppid
	syscall.Kill(sup, syscall.SIGSTOP)
	time.Sleep(time.Second) // the pause under test: 4 × the 250ms window
	syscall.Kill(sup, syscall.SIGCONT)
	os.WriteFile(release, nil, 0o644)
	if code := p.wait(t, 20*time.Second); code != 0 || strings.Contains(p.stderr.String(), "lost") {
		t.Errorf("after a pause of dlock's supervisor: exit %d; stderr:\n%s", code, p.stderr)
	}
}

// The supervisor killed (SIGKILL) while it holds: the helper sees the end
// of its input and abandons the lock, unreleased (its lease runs out; a
// lock directory's holder, the helper, is then dead), since the job may
// outlive the supervisor for a moment.
func TestBackendSupervisorKilled(t *testing.T) {
	t.Parallel()
	p, helper, job, dir := startBackendJob(t, staleFlag, "10", "-grace", "0.5")
	info, ok := readProc(job)
	if !ok {
		t.Fatalf("no job %d", job)
	}
	syscall.Kill(info.ppid, syscall.SIGKILL)
	eventually(t, 20*time.Second, "the helper to exit", func() bool { return !processAlive(helper) })
	st, err := dlock.Inspect(dir)
	if err != nil || !st.Held || st.Holder.PID != helper || !st.Dead {
		t.Errorf("after the supervisor was killed: %v, %v; want still held by the dead helper %d", st, err, helper)
	}
	p.wait(t, 30*time.Second) // the front stops the job's orphans
	if processAlive(job) {
		t.Errorf("the job %d outlived the front", job)
	}
}
