//go:build unix

package etcdlock_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// "dlock run etcd://…": the dlock command and dlock-backend-etcd built
// side by side (as packages install them), against the test's etcd.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildDlockRun builds dlock and the helper once per test binary.
func buildDlockRun(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { buildDir, buildErr = buildBoth() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "dlock")
}

func buildBoth() (string, error) {
	dir, err := os.MkdirTemp("", "etcdlock-dlockrun-")
	if err != nil {
		return "", err
	}
	for _, b := range []struct{ dir, pkg, out string }{
		{"..", "./cmd/dlock", "dlock"},
		{".", "./cmd/dlock-backend-etcd", "dlock-backend-etcd"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return dir, nil
}

type dlockRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
}

func startDlock(t *testing.T, bin string, args ...string) *dlockRun {
	t.Helper()
	r := &dlockRun{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() { r.cmd.Process.Kill(); <-r.done })
	return r
}

func (r *dlockRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("dlock %v still runs after 60s", r.cmd.Args[1:])
	}
	return r.cmd.ProcessState.ExitCode()
}

func waitFile(t *testing.T, p string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDlockRunEtcd(t *testing.T) {
	bin := buildDlockRun(t)
	dir := t.TempDir()
	url := "etcd://" + etcdEndpoint + "/dlock-run-test"
	fence1, release := filepath.Join(dir, "fence1"), filepath.Join(dir, "release")
	first := startDlock(t, bin, "run", "-stale-after", "5", url, "--", "sh", "-c",
		`echo "$DLOCK_FENCE $DLOCK_PATH" > `+fence1+`.t && mv `+fence1+`.t `+fence1+`; while [ ! -e `+release+` ]; do sleep 0.05; done`)
	got := strings.Fields(waitFile(t, fence1))
	if len(got) != 2 || got[1] != url {
		t.Fatalf("the job's DLOCK_FENCE and DLOCK_PATH: %q", got)
	}
	f1, _ := strconv.ParseUint(got[0], 10, 64)

	busy := startDlock(t, bin, "run", "-n", url, "--", "true")
	if code := busy.wait(t); code != 75 || !strings.Contains(busy.stderr.String(), "is busy: held by pid") {
		t.Errorf("dlock run -n on the held key: exit %d, stderr %q; want 75, busy", code, busy.stderr.String())
	}
	st := startDlock(t, bin, "status", url)
	if code := st.wait(t); code != 3 || !strings.Contains(st.stdout.String(), ": held by pid ") {
		t.Errorf("dlock status of the held lock: exit %d, %q %q; want 3, held", code, st.stdout.String(), st.stderr.String())
	}
	os.WriteFile(release, nil, 0o644)
	if code := first.wait(t); code != 0 {
		t.Fatalf("first run: exit %d; stderr:\n%s", code, first.stderr.String())
	}
	second := startDlock(t, bin, "run", "-n", url, "--", "sh", "-c", `echo $DLOCK_FENCE`)
	if code := second.wait(t); code != 0 {
		t.Fatalf("second run: exit %d; stderr:\n%s", code, second.stderr.String())
	}
	if f2, _ := strconv.ParseUint(strings.TrimSpace(second.stdout.String()), 10, 64); f2 <= f1 {
		t.Errorf("fences %d then %q: want rising", f1, second.stdout.String())
	}
	t.Logf("fences %d then %s", f1, strings.TrimSpace(second.stdout.String()))
}

// The holder's key deleted behind its back: etcdlock sees it, the helper
// says so, and dlock stops the job and exits 76.
func TestDlockRunEtcdLost(t *testing.T) {
	bin := buildDlockRun(t)
	dir := t.TempDir()
	key := "/dlock-run-lost"
	started := filepath.Join(dir, "started")
	run := startDlock(t, bin, "run", "-stale-after", "5", "-grace", "0.5", "etcd://"+etcdEndpoint+key, "--", "sh", "-c",
		`echo $$ > `+started+`.t && mv `+started+`.t `+started+`; exec sleep 60`)
	job, _ := strconv.Atoi(waitFile(t, started))
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdEndpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Delete(context.Background(), key+"/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code := run.wait(t)
	t.Logf("exit %d %s after the key was deleted; stderr:\n%s", code, time.Since(start).Round(time.Millisecond), run.stderr.String())
	if code != 76 || !strings.Contains(run.stderr.String(), "lost the lock") {
		t.Errorf("exit %d, want 76 and a loss reported", code)
	}
	if err := exec.Command("kill", "-0", strconv.Itoa(job)).Run(); err == nil {
		t.Errorf("the job %d still runs", job)
	}
}
