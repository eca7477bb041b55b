//go:build linux

package dlock

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Clock skew between hosts. The holder runs on another "host" (pid and UTS
// namespaces of its own, so that no pid check applies) with its clock read
// off by an offset (DLOCK_HOSTS_SKEW, see realOffsetClock); the waiters are
// this test process, on the same local directory. A Linux kernel has one
// realtime clock for all namespaces: the offset is the only way to skew
// it per process. Figures are printed on one clock (CLOCK_MONOTONIC).

const (
	skewTimeout = 2 * time.Second // the holder's TIMEOUT
	skewBound   = 2 * time.Second // WithMaxClockSkew of the waiters
)

func needNamespaces(t *testing.T) {
	t.Helper()
	if err := canUnshare(); err != nil {
		t.Skipf("another host needs pid and UTS namespaces of its own: %v", err)
	}
}

// startSkewedHolder starts a holder of path on a host of its own whose clock
// is off by skew, and returns it once it holds the lock.
func startSkewedHolder(t *testing.T, path string, skew time.Duration) *hostProc {
	t.Helper()
	h := startOnHost(t, aHost{name: "skewed"}, []string{"DLOCK_TEST_CHILD=holder", "DLOCK_HOSTS_PATH=" + path,
		"DLOCK_HOSTS_TIMEOUT=" + skewTimeout.String(), "DLOCK_HOSTS_SKEW=" + skew.String()},
		os.Args[0], "-test.run=^$")
	if _, ok := h.wait("acquired", false, 30*time.Second); !ok {
		t.Fatalf("the holder on another host did not acquire: %s", h.stderrText())
	}
	return h
}

// logBuffer is a logger's output, safe for use by several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// about returns the first logged line that mentions word, or "".
func (b *logBuffer) about(word string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(b.b.String(), "\n") {
		if strings.Contains(line, word) {
			return line
		}
	}
	return ""
}

func skewWaiter(t *testing.T, path string, log *logBuffer) *Lock {
	t.Helper()
	opts := []Option{WithTimeout(skewTimeout), WithMaxClockSkew(skewBound), WithPollInterval(50 * time.Millisecond)}
	if log != nil {
		opts = append(opts, WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	}
	l, err := New(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A live holder on another host, refreshing, whose clock is off within the
// bound (behind by half of it, by 0.99 of it; ahead by ten times it) is
// never reclaimed: not by a waiter that waits, not by fresh TryLocks,
// for 3 TIMEOUTs.
func TestSkewLiveHolderNotReclaimed(t *testing.T) {
	needNamespaces(t)
	for _, tc := range []struct {
		name string
		skew time.Duration
	}{
		{"behind-0.5x", -skewBound / 2},
		{"behind-0.99x", -skewBound * 99 / 100},
		{"ahead-10x", 10 * skewBound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "lock")
			h := startSkewedHolder(t, path, tc.skew)
			base := monoNow()
			watch := 3 * skewTimeout
			ctx, cancel := context.WithTimeout(context.Background(), watch)
			defer cancel()
			log := &logBuffer{}
			w := skewWaiter(t, path, log)
			waited := make(chan int64, 1) // when Lock acquired, or 0
			go func() {
				if w.Lock(ctx) != nil {
					waited <- 0
					return
				}
				waited <- monoNow()
				w.Unlock()
			}()
			var freshAt int64
			tries := 0
			for ctx.Err() == nil && freshAt == 0 && len(waited) == 0 {
				l := skewWaiter(t, path, nil)
				ok, err := l.TryLock()
				tries++
				switch {
				case err != nil:
					t.Errorf("fresh TryLock: %v", err)
				case ok:
					freshAt = monoNow()
					l.Unlock()
				}
				time.Sleep(100 * time.Millisecond) // between fresh processes' tries
			}
			cancel()
			waitedAt := <-waited
			grace := time.Duration(0)
			if waitedAt != 0 || freshAt != 0 {
				grace = skewTimeout // reclaimed: when is the holder told?
			}
			lost, told := h.wait("lost", false, grace)
			h.send("unlock")
			unlocked, _ := h.wait("unlock ", false, 30*time.Second)
			verdict := "PASS"
			if waitedAt != 0 || freshAt != 0 {
				verdict = "FAIL (a live holder was reclaimed)"
				t.Errorf("holder %v off was reclaimed while alive: by the waiter at %s, by a fresh TryLock at %s", tc.skew, since(base, waitedAt), since(base, freshAt))
			}
			toldAt := int64(0)
			if told {
				toldAt = lost.mono()
			}
			note := log.about("clock")
			if note == "" {
				note = "(none)"
			}
			figure(t, "skew %-12s holder's clock %+v, bound %v, TIMEOUT %v: watched %v: waiter reclaimed %s, %d fresh TryLocks reclaimed %s, holder told %s, its Unlock %s  %s",
				tc.name, tc.skew, skewBound, skewTimeout, watch, since(base, waitedAt), tries, since(base, freshAt), since(base, toldAt), lineRest(unlocked), verdict)
			figure(t, "skew %-12s the waiter's log about the clock: %s", tc.name, note)
		})
	}
}

// A live holder whose clock is behind by more than the bound: what happens
// is printed, not judged (the bound is the user's promise about the clocks).
func TestSkewBeyondBound(t *testing.T) {
	needNamespaces(t)
	for _, tc := range []struct {
		name  string
		skew  time.Duration
		fresh bool // a fresh TryLock, else a waiter that waits
	}{
		{"behind-2.5x-fresh", -skewBound * 5 / 2, true},
		{"behind-2.5x-waiting", -skewBound * 5 / 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "lock")
			h := startSkewedHolder(t, path, tc.skew)
			base := monoNow()
			var at int64
			if tc.fresh {
				for time.Duration(monoNow()-base) < 2*skewTimeout {
					l := skewWaiter(t, path, nil)
					if ok, err := l.TryLock(); err != nil {
						t.Fatal(err)
					} else if ok {
						at = monoNow()
						defer l.Unlock()
						break
					}
					time.Sleep(100 * time.Millisecond) // between fresh processes' tries
				}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 2*skewTimeout)
				defer cancel()
				w := skewWaiter(t, path, nil)
				if w.Lock(ctx) == nil {
					at = monoNow()
					defer w.Unlock()
				}
			}
			toldAt := int64(0)
			if lost, ok := h.wait("lost", false, skewTimeout); ok {
				toldAt = lost.mono()
			}
			overlap := "-"
			if at != 0 && toldAt != 0 {
				overlap = fmt.Sprintf("%+.3fs", time.Duration(toldAt-at).Seconds())
			}
			figure(t, "skew %-20s holder's clock %+v, bound %v, TIMEOUT %v: reclaimed %s, holder told %s, told minus reclaimed %s  (documented, not judged)",
				tc.name, tc.skew, skewBound, skewTimeout, since(base, at), since(base, toldAt), overlap)
		})
	}
}

// killHolder kills the holder's host and returns the CLOCK_MONOTONIC of
// the kill and the last beat the holder wrote (wall clock, from the lock).
func killHolder(t *testing.T, path string, h *hostProc) (int64, time.Time) {
	t.Helper()
	// A refresh in flight when the holder dies may still land: kill it
	// right after one, so that none is due.
	n := len(h.lines("beat"))
	for deadline := time.Now().Add(10 * time.Second); len(h.lines("beat")) == n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // poll for the next heartbeat
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	at := monoNow()
	<-h.done
	st, err := Inspect(path)
	if err != nil || !st.Held {
		t.Fatalf("after the kill: %v, %v", st, err)
	}
	return at, st.Holder.Beat
}

// A dead holder on another host (killed right after a refresh) is reclaimed
// by a fresh TryLock only once its beat is older than TIMEOUT plus the
// bound, and soon after that.
func TestSkewDeadHolderFreshTryLock(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "lock")
	h := startSkewedHolder(t, path, 0)
	killed, beat := killHolder(t, path, h)
	var at int64
	var age time.Duration
	for deadline := time.Now().Add(skewTimeout + skewBound + 10*time.Second); time.Now().Before(deadline); {
		l := skewWaiter(t, path, nil)
		now := time.Now()
		ok, err := l.TryLock()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			at, age = monoNow(), now.Sub(beat)
			l.Unlock()
			break
		}
		time.Sleep(50 * time.Millisecond) // between fresh processes' tries
	}
	want, slack := skewTimeout+skewBound, time.Second
	verdict := "PASS"
	switch {
	case at == 0:
		verdict = "FAIL (never reclaimed)"
	case age < want:
		verdict = "FAIL (reclaimed before TIMEOUT + bound)"
	case age > want+slack:
		verdict = "FAIL (reclaimed late)"
	}
	figure(t, "skew dead-fresh-trylock   TIMEOUT %v, bound %v: killed at +0.000s, reclaimed %s, beat's age then %.3fs (want %v to %v)  %s",
		skewTimeout, skewBound, since(killed, at), age.Seconds(), want, want+slack, verdict)
	if verdict != "PASS" {
		t.Error(verdict)
	}
}

// A dead holder on another host is reclaimed by a waiter that was waiting
// once it has seen the holder's entry unchanged for TIMEOUT, on its own
// clock (no bound needed): about TIMEOUT after the last refresh.
func TestSkewDeadHolderWaitingWaiter(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "lock")
	h := startSkewedHolder(t, path, 0)
	w := skewWaiter(t, path, nil)
	blocked := make(chan struct{})
	var once sync.Once
	w.testBlocked = func() { once.Do(func() { close(blocked) }) }
	ctx, cancel := context.WithTimeout(context.Background(), skewTimeout+skewBound+20*time.Second)
	defer cancel()
	got := make(chan int64, 1)
	go func() {
		if err := w.Lock(ctx); err != nil {
			t.Error(err)
			got <- 0
			return
		}
		got <- monoNow()
	}()
	<-blocked
	killed, _ := killHolder(t, path, h)
	beats := h.lines("beat")
	last := beats[len(beats)-1].mono()
	at := <-got
	if at != 0 {
		w.Unlock()
	}
	verdict := "PASS"
	switch {
	case at == 0:
		verdict = "FAIL (never reclaimed)"
	case time.Duration(at-last) < skewTimeout-50*time.Millisecond:
		verdict = "FAIL (reclaimed before TIMEOUT of observation)"
	case time.Duration(at-killed) > skewTimeout+time.Second:
		verdict = "FAIL (reclaimed late)"
	}
	figure(t, "skew dead-waiting-waiter  TIMEOUT %v, bound %v: last refresh %s, killed at +0.000s, reclaimed %s (%.3fs after the last refresh)  %s",
		skewTimeout, skewBound, since(killed, last), since(killed, at), time.Duration(at-last).Seconds(), verdict)
	if verdict != "PASS" {
		t.Error(verdict)
	}
}

// `dlock run -patience 0` (a cron job, say) and a dead holder on another
// host: busy while the holder's beat is younger than TIMEOUT plus the
// bound (the CLI's default, DefaultMaxClockSkew, unless it has a flag for
// it), and reclaimed at once when the beat is older than that.
func TestSkewDeadHolderCLIPatienceZero(t *testing.T) {
	needNamespaces(t)
	bin := buildDlock(t, t.TempDir())
	bound := DefaultMaxClockSkew
	var boundFlag []string
	if help, _ := exec.Command(bin, "run", "-h").CombinedOutput(); strings.Contains(string(help), "-max-clock-skew") {
		bound, boundFlag = skewBound, []string{"-max-clock-skew", skewBound.String()}
	}
	tryRun := func(path string) int {
		args := append([]string{"run", "-q", "-patience", "0", "-stale-after", skewTimeout.String()}, boundFlag...)
		cmd := exec.Command(bin, append(args, path, "--", "true")...)
		err := cmd.Run()
		if cmd.ProcessState == nil {
			t.Fatalf("dlock run: %v", err)
		}
		return cmd.ProcessState.ExitCode()
	}

	// Recently dead: busy (75) for 1.5 TIMEOUTs after the kill.
	path := filepath.Join(t.TempDir(), "lock")
	h := startSkewedHolder(t, path, 0)
	killed, _ := killHolder(t, path, h)
	codes := map[int]int{}
	firstFree := int64(0)
	for time.Duration(monoNow()-killed) < skewTimeout*3/2 {
		code := tryRun(path)
		codes[code]++
		if code == 0 && firstFree == 0 {
			firstFree = monoNow()
		}
		time.Sleep(100 * time.Millisecond) // between cron runs
	}
	verdict := "PASS"
	if codes[0] > 0 {
		verdict = "FAIL (a dead holder's lock was reclaimed before TIMEOUT + bound)"
		t.Error(verdict)
	}
	figure(t, "skew cli-patience-0 fresh TIMEOUT %v, bound %v: for 1.5 TIMEOUTs after the kill, exit codes %v, first success %s  %s",
		skewTimeout, bound, codes, since(killed, firstFree), verdict)

	// Long dead (its beat older than TIMEOUT + bound): reclaimed at once.
	old := filepath.Join(t.TempDir(), "lock")
	h = startSkewedHolder(t, old, -(skewTimeout + bound + 10*time.Second))
	killed, beat := killHolder(t, old, h)
	code := tryRun(old)
	verdict = "PASS"
	if code != 0 {
		verdict = fmt.Sprintf("FAIL (exit %d)", code)
		t.Error(verdict)
	}
	figure(t, "skew cli-patience-0 old   TIMEOUT %v, bound %v: beat %.1fs old: one run exits %d at %s  %s",
		skewTimeout, bound, time.Since(beat).Seconds(), code, since(killed, monoNow()), verdict)
}
