//go:build unix

package pglock_test

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
)

// "dlock run postgres://…#NAME": the dlock command and
// dlock-backend-postgres built side by side (as packages install them),
// straight to the server and through PgBouncer in transaction pooling.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildDlockRun builds dlock and the helper once per test binary, into a
// directory removed when the test that first needed it ends.
func buildDlockRun(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pglock-dlockrun-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		for _, b := range []struct{ dir, pkg, out string }{
			{"..", "./cmd/dlock", "dlock"},
			{".", "./cmd/dlock-backend-postgres", "dlock-backend-postgres"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
			cmd.Dir = b.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "dlock")
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

// runName is a lock name for a URL's fragment.
func runName(t *testing.T) string {
	return fmt.Sprintf("dlockrun-%d-%d", os.Getpid(), time.Now().UnixNano())
}

func TestDlockRunPostgres(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			bin := buildDlockRun(t)
			dir := t.TempDir()
			url := tg.url + "#" + runName(t)
			fence1, release := filepath.Join(dir, "fence1"), filepath.Join(dir, "release")
			first := startDlock(t, bin, "run", "-stale-after", "5", url, "--", "sh", "-c",
				`echo "$DLOCK_FENCE $DLOCK_PATH" > `+fence1+`.t && mv `+fence1+`.t `+fence1+`; while [ ! -e `+release+` ]; do sleep 0.05; done`)
			got := strings.Fields(waitFile(t, fence1))
			if len(got) != 2 || got[1] != url {
				t.Fatalf("the job's DLOCK_FENCE and DLOCK_PATH: %q, want the fence and %s", got, url)
			}
			f1, _ := strconv.ParseUint(got[0], 10, 64)

			for _, c := range []struct {
				flags []string
				want  int
			}{{[]string{"-n"}, 75}, {[]string{"-w", "0.5", "-E", "9"}, 9}} {
				busy := startDlock(t, bin, append(append([]string{"run"}, c.flags...), url, "--", "true")...)
				if code := busy.wait(t); code != c.want || !strings.Contains(busy.stderr.String(), "is busy: held by pid") {
					t.Errorf("dlock run %v on the held lock: exit %d, stderr %q; want %d, busy", c.flags, code, busy.stderr.String(), c.want)
				}
			}
			st := startDlock(t, bin, "status", url)
			if code := st.wait(t); code != 3 || !strings.Contains(st.stdout.String(), ": held by pid ") {
				t.Errorf("dlock status of the held lock: exit %d, %q %q; want 3, held", code, st.stdout.String(), st.stderr.String())
			}
			// A waiter gets it once the first is done.
			next := startDlock(t, bin, "run", "-w", "30", url, "--", "sh", "-c", `echo $DLOCK_FENCE`)
			os.WriteFile(release, nil, 0o644)
			if code := first.wait(t); code != 0 {
				t.Fatalf("first run: exit %d; stderr:\n%s", code, first.stderr.String())
			}
			if code := next.wait(t); code != 0 {
				t.Fatalf("the waiter: exit %d; stderr:\n%s", code, next.stderr.String())
			}
			if f2, _ := strconv.ParseUint(strings.TrimSpace(next.stdout.String()), 10, 64); f2 <= f1 {
				t.Errorf("fences %d then %q: want rising", f1, next.stdout.String())
			}
			t.Logf("fences %d then %s", f1, strings.TrimSpace(next.stdout.String()))
		})
	}
}

// The holder's row deleted behind its back: the next refresh finds it
// gone, the helper says so, and dlock stops the job and exits 76.
func TestDlockRunPostgresLost(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			bin := buildDlockRun(t)
			name := runName(t)
			started := filepath.Join(t.TempDir(), "started")
			run := startDlock(t, bin, "run", "-stale-after", "3", "-grace", "0.3", tg.url+"#"+name, "--", "sh", "-c",
				`echo $$ > `+started+`.t && mv `+started+`.t `+started+`; exec sleep 60`)
			job, _ := strconv.Atoi(waitFile(t, started))
			p := newPool(t, tg.url, 1)
			if _, err := p.Exec(context.Background(), "DELETE FROM dlock_leases WHERE name = $1", name); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			code := run.wait(t)
			t.Logf("exit %d %s after the row was deleted; stderr:\n%s", code, time.Since(start).Round(time.Millisecond), run.stderr.String())
			if code != 76 || !strings.Contains(run.stderr.String(), "lost the lock") {
				t.Errorf("exit %d, want 76 and a loss reported", code)
			}
			if err := exec.Command("kill", "-0", strconv.Itoa(job)).Run(); err == nil {
				t.Errorf("the job %d still runs", job)
			}
		})
	}
}

// removeDlockRunBuild removes what buildDlockRun built (TestMain calls it).
func removeDlockRunBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Processes counting under "dlock run URL": each round's job takes an
// exclusion marker (mkdir fails if another job is inside), reads the
// counter, writes it plus one, and lets the marker go. Exact count, no
// overlap, straight and through PgBouncer.
func TestDlockRunPostgresCounting(t *testing.T) {
	const procs, rounds = 4, 5
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			bin := buildDlockRun(t)
			dir := t.TempDir()
			url := tg.url + "#" + runName(t)
			counter, marker, overlaps := filepath.Join(dir, "counter"), filepath.Join(dir, "inside"), filepath.Join(dir, "overlaps")
			os.WriteFile(counter, []byte("0\n"), 0o644)
			job := `mkdir "$M" 2>/dev/null || echo overlap >> "$O"; n=$(cat "$C"); echo $((n + 1)) > "$C.t"; mv "$C.t" "$C"; rmdir "$M" 2>/dev/null; true`
			var wg sync.WaitGroup
			codes := make(chan string, procs*rounds)
			for p := 0; p < procs; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := 0; r < rounds; r++ {
						cmd := exec.Command(bin, "run", "-w", "60", url, "--", "sh", "-c", job)
						cmd.Env = append(os.Environ(), "M="+marker, "O="+overlaps, "C="+counter)
						if out, err := cmd.CombinedOutput(); err != nil {
							codes <- fmt.Sprintf("%v: %s", err, out)
						}
					}
				}()
			}
			wg.Wait()
			close(codes)
			for c := range codes {
				t.Errorf("a dlock run failed: %s", c)
			}
			b, _ := os.ReadFile(counter)
			ov, _ := os.ReadFile(overlaps)
			t.Logf("%d processes x %d rounds: counter %s, %d overlaps", procs, rounds, strings.TrimSpace(string(b)), strings.Count(string(ov), "overlap"))
			if strings.TrimSpace(string(b)) != strconv.Itoa(procs*rounds) || len(ov) > 0 {
				t.Errorf("counter %q, overlaps %q: want %d and none", b, ov, procs*rounds)
			}
		})
	}
}
