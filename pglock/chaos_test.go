package pglock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/pglock"
)

// roleChaos takes the lock again and again until killed. Inside, it
// checks the marker a holder leaves while inside (one of a live process
// is an overlap; one of a killed process is removed) and that fences
// rise, then counts.
func roleChaos() int {
	p := rolePool("pglock-chaos")
	defer p.Close()
	l, err := pglock.New(p, os.Getenv("R_NAME"), pglock.WithTimeout(time.Second), pglock.WithMargin(300*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir := os.Getenv("R_DIR")
	marker, last, count := filepath.Join(dir, "inside"), filepath.Join(dir, "fence"), filepath.Join(dir, "count")
	for {
		err := l.Do(context.Background(), func(ctx context.Context) error {
			if b, err := os.ReadFile(marker); err == nil {
				pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				if pid > 0 && syscall.Kill(pid, 0) == nil {
					ev("overlap with pid %d (fence %d)", pid, l.Fence())
				}
				os.Remove(marker)
			}
			if err := os.WriteFile(marker, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
				return err
			}
			b, _ := os.ReadFile(last)
			prev, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			if l.Fence() <= prev {
				ev("fencedown %d after %d", l.Fence(), prev)
			}
			os.WriteFile(last, []byte(strconv.FormatUint(l.Fence(), 10)), 0o644)
			b, _ = os.ReadFile(count)
			n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			// by rename: a worker killed while writing must not leave a
			// truncated count behind
			tmp := count + "." + strconv.Itoa(os.Getpid())
			os.WriteFile(tmp, []byte(strconv.Itoa(n+1)), 0o644)
			os.Rename(tmp, count)
			return os.Remove(marker)
		})
		switch {
		case errors.Is(err, dlock.ErrLost):
			ev("lost %v", err)
		case err != nil:
			ev("failed %v", err)
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	}
}

// TestChaos: 4 processes (2 straight to the server, 2 through PgBouncer)
// take one lock in a loop while the test kills them (SIGKILL, and starts
// another), kills their backends, and pauses PgBouncer past TIMEOUT, at
// random for PGLOCK_CHAOS_SECONDS (default 15). Never two inside, fences
// always rising, and the lock keeps going round.
func TestChaos(t *testing.T) {
	tgs := targets(t)
	admin := adminConn(t)
	secs, _ := strconv.Atoi(os.Getenv("PGLOCK_CHAOS_SECONDS"))
	if secs <= 0 {
		secs = 15
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "count"), []byte("0"), 0o644)
	name := lockName(t)
	t0 := time.Now()
	urls := []string{tgs[0].url, tgs[0].url, tgs[1].url, tgs[1].url}
	workers := make([]*proc, len(urls))
	var all []*proc
	spawn := func(i int) {
		workers[i] = startProc(t, t0, fmt.Sprintf("worker-%d", i), "chaos", "R_URL="+urls[i], "R_NAME="+name, "R_DIR="+dir)
		all = append(all, workers[i])
	}
	for i := range workers {
		spawn(i)
	}
	actions := map[string]int{}
	end := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		switch rand.IntN(4) {
		case 0:
			i := rand.IntN(len(workers))
			workers[i].cmd.Process.Signal(syscall.SIGKILL)
			workers[i].cmd.Wait()
			spawn(i)
			actions["worker SIGKILLed and replaced"]++
		case 1:
			terminate(t, tgs[0].url, "pglock-chaos")
			actions["all workers' backends killed"]++
		case 2:
			pause(t, admin)
			time.Sleep(time.Duration(500+rand.IntN(2000)) * time.Millisecond)
			resume(t, admin)
			actions["PgBouncer paused 0.5-2.5s"]++
		case 3:
			actions["quiet"]++
		}
	}
	for _, w := range workers {
		w.cmd.Process.Signal(syscall.SIGKILL)
		w.cmd.Wait()
	}
	var overlaps, fencedown, lost, failed []string
	for _, w := range all {
		<-w.done
		w.mu.Lock()
		for _, e := range w.evs {
			s := fmt.Sprintf("%s at %v: %s", w.name, e.at.Round(time.Millisecond), e.rest)
			switch e.kind {
			case "overlap":
				overlaps = append(overlaps, s)
			case "fencedown":
				fencedown = append(fencedown, s)
			case "lost":
				lost = append(lost, s)
			case "failed":
				failed = append(failed, s)
			}
		}
		w.mu.Unlock()
	}
	b, _ := os.ReadFile(filepath.Join(dir, "count"))
	t.Logf("chaos for %ds: %d processes in all, faults %v; %s rounds counted; %d overlaps, %d fences out of order, %d losses told (holders behind a paused PgBouncer), %d failed attempts",
		secs, len(all), actions, b, len(overlaps), len(fencedown), len(lost), len(failed))
	for _, s := range append(append(overlaps, fencedown...), failed...) {
		t.Log(s)
	}
	if len(overlaps) > 0 || len(fencedown) > 0 {
		t.Fatal("two holders inside at once, or a fence that did not rise")
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n < secs {
		t.Fatalf("only %d rounds in %ds: the lock did not keep going round", n, secs)
	}
}
