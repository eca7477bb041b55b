//go:build linux

package dlock

// Wake-up hints across the hosts of scripts/hosts.sh: two processes, one
// on host A and one on host B, each with its own network, pid and UTS
// namespaces and its own sshfs mount of one export, hand a lock to each
// other. The hand-off (from the holder's Unlock to the waiter's Lock
// returning, on one CLOCK_MONOTONIC) and the server's work while one
// waits are measured with the default poll of 100ms and no hints, and
// with a poll of 1s (and 2s) and hints.
//
//	eval "$(scripts/hosts.sh up)"
//	go test -run TestHostsWakeHints -v -count=1 .
//
// DLOCK_HINT_ROUNDS sets the hand-offs per case (default 20),
// DLOCK_HINT_WAITING how long the waiting that is counted lasts (default
// 10s).

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// handoffChild is the role "handoff": one Lock at DLOCK_HOSTS_PATH, which
// obeys its stdin: "lock" locks (in the background; "blocked" when it
// first waits, then "acquired FENCE"), "unlock" unlocks ("unlocking",
// then "unlocked RESULT"), "exit" or the end of stdin ends it.
func handoffChild() int {
	l, err := New(os.Getenv("DLOCK_HOSTS_PATH"), childOptions()...)
	if err != nil {
		childSay("error", strconv.Quote(err.Error()))
		return 1
	}
	var once atomic.Pointer[sync.Once]
	l.testBlocked = func() {
		if o := once.Load(); o != nil {
			o.Do(func() { childSay("blocked") })
		}
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "lock":
			once.Store(new(sync.Once))
			go func() {
				if err := l.Lock(context.Background()); err != nil {
					childSay("error", strconv.Quote(err.Error()))
					return
				}
				childSay("acquired", l.Fence())
			}()
		case "unlock":
			childSay("unlocking")
			err := l.Unlock()
			childSay("unlocked", unlockResult(err))
		case "exit":
			return 0
		}
	}
	return 0
}

// nth waits until p has written n lines beginning with prefix, and
// returns the nth.
func (p *hostProc) nth(t *testing.T, prefix string, n int, d time.Duration) procLine {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if l := p.lines(prefix); len(l) >= n {
			return l[n-1]
		}
		if e := p.lines("error"); len(e) > 0 {
			t.Fatalf("host %s: %s", p.name, e[0].text)
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: no %q line #%d within %v; stderr: %s", p.name, prefix, n, d, p.stderrText())
		}
		time.Sleep(time.Millisecond)
	}
}

// route gives host h its route to the other host through the server's
// namespace (scripts/hosts.sh makes it; a link set down and up again, as
// the link-down fault does, loses it): via the server's end of h's link,
// to the /16 both hosts' links are in.
func (r *hostsRig) route(t *testing.T, h *rigHost) {
	t.Helper()
	out, err := exec.Command("ip", "-n", r.serverNS, "-4", "-o", "addr", "show", "dev", h.srvDev).Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) < 4 {
		t.Fatalf("the server's end of host %s's link: %v %q", h.name, err, out)
	}
	gw, _, _ := strings.Cut(f[3], "/")
	o := strings.Split(gw, ".")
	run(t, "ip", "-n", h.netns, "route", "replace", o[0]+"."+o[1]+".0.0/16", "via", gw)
}

// syscw is the write system calls process pid has made: the sftp
// server's replies, one per request it answers.
func syscw(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatalf("the sftp server's counts: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no syscw in /proc/PID/io")
	return 0
}

type hintCase struct {
	name  string
	poll  time.Duration
	hints bool
}

func TestHostsWakeHints(t *testing.T) {
	r := needHostsRig(t)
	r.route(t, &r.a)
	r.route(t, &r.b)
	rounds := envInt("DLOCK_HINT_ROUNDS", 20)
	waiting := envDuration("DLOCK_HINT_WAITING", 10*time.Second)
	for _, c := range []hintCase{
		{"poll-100ms", 100 * time.Millisecond, false},
		{"poll-1s", time.Second, false},
		{"poll-1s+hints", time.Second, true},
		{"poll-2s+hints", 2 * time.Second, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			handoffs, renames, opsPerSec := runHandoffs(t, r, c, rounds, waiting)
			var after []time.Duration // from the release rename's end to the acquisition
			for i := range handoffs {
				after = append(after, handoffs[i]-renames[i])
			}
			slices.Sort(after)
			slices.Sort(handoffs)
			slices.Sort(renames)
			pct := func(p float64) time.Duration { return handoffs[int(p*float64(len(handoffs)-1)+0.5)] }
			rename := renames[len(renames)/2]

			figure(t, "%s: hand-off A<->B over sshfs, %d rounds: p50 %.2fms p99 %.2fms max %.2fms (%.1fx the release's own rename, p50 %.2fms; from its end to the acquisition p50 %.2fms); waiting costs the sftp server %.1f replies per second",
				c.name, len(handoffs), ms(pct(0.5)), ms(pct(0.99)), ms(handoffs[len(handoffs)-1]), float64(pct(0.5))/float64(rename), ms(rename), ms(after[len(after)/2]), opsPerSec)
			if c.hints && pct(0.5) >= c.poll/2 {
				t.Errorf("with hints the median hand-off is %v, no better than the %v poll's: the datagrams did not arrive", pct(0.5), c.poll)
			}
		})
	}
}

// straceC, with DLOCK_HINT_STRACE=1, counts the system calls of process
// pid (strace -c) until stop is called, and logs the table: what the sftp
// server does for a waiter.
func straceC(t *testing.T, pid int) (stop func()) {
	t.Helper()
	if os.Getenv("DLOCK_HINT_STRACE") != "1" {
		return func() {}
	}
	out := filepath.Join(t.TempDir(), "strace")
	cmd := exec.Command("strace", "-c", "-f", "-p", strconv.Itoa(pid), "-o", out)
	if err := cmd.Start(); err != nil {
		t.Fatalf("strace: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // strace attaches
	return func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		b, _ := os.ReadFile(out)
		figure(t, "strace -c -f -p %d (the sftp server of host B) while B waits:\n%s", pid, b)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runHandoffs hands the lock between a process on A and one on B, rounds
// times, each release at a random moment of the waiter's poll interval,
// and then counts the sftp server's replies to B while B waits.
func runHandoffs(t *testing.T, r *hostsRig, c hintCase, rounds int, waiting time.Duration) (handoffs, renames []time.Duration, opsPerSec float64) {
	pa, pb := r.dirs(t)
	env := []string{"DLOCK_TEST_CHILD=handoff", "DLOCK_HOSTS_POLL=" + c.poll.String(), "DLOCK_HOSTS_TIMEOUT=10s"}
	if c.hints {
		env = append(env, "DLOCK_HOSTS_HINTS=auto")
	}
	start := func(h rigHost, dir string) *hostProc {
		return startOnHost(t, h.aHost, append(env, "DLOCK_HOSTS_PATH="+filepath.Join(dir, "lock")), os.Args[0], "-test.run=^$")
	}
	procs := [2]*hostProc{start(r.a, pa), start(r.b, pb)}
	counts, blocks := map[*hostProc]int{}, map[*hostProc]int{}
	lock := func(p *hostProc) {
		counts[p]++
		p.send("lock")
	}
	wait := func(p *hostProc) { // lock, which must block
		lock(p)
		blocks[p]++
		p.nth(t, "blocked", blocks[p], time.Minute)
	}
	lock(procs[0])
	procs[0].nth(t, "acquired", 1, time.Minute)

	unlocks := map[*hostProc]int{}
	for i := range rounds {
		holder, waiter := procs[i%2], procs[(i+1)%2]
		wait(waiter)
		time.Sleep(rand.N(c.poll)) // a random moment of the waiter's poll
		holder.send("unlock")
		unlocks[holder]++
		freed := holder.nth(t, "unlocking", unlocks[holder], time.Minute)
		got := waiter.nth(t, "acquired", counts[waiter], time.Minute)
		done := holder.nth(t, "unlocked", unlocks[holder], time.Minute)
		handoffs = append(handoffs, time.Duration(got.mono()-freed.mono()))
		renames = append(renames, time.Duration(done.mono()-freed.mono()))
		t.Logf("round %d: %s to %s in %v (the release rename took %v)", i, holder.name, waiter.name,
			time.Duration(got.mono()-freed.mono()), time.Duration(done.mono()-freed.mono()))
	}
	// The server's work while B waits (A holds now, if rounds is odd,
	// else B: make it A).
	holder, waiter := procs[rounds%2], procs[(rounds+1)%2]
	if waiter != procs[1] {
		wait(waiter)
		holder.send("unlock")
		waiter.nth(t, "acquired", counts[waiter], time.Minute)
		holder, waiter = waiter, holder
	}
	lock(waiter)
	waiter.nth(t, "blocked", counts[waiter], time.Minute)
	session := r.b.sessionPID
	stop := straceC(t, session)
	before := syscw(t, session)
	time.Sleep(waiting)
	after := syscw(t, session)
	stop()
	holder.send("unlock")
	waiter.nth(t, "acquired", counts[waiter], time.Minute)
	return handoffs, renames, float64(after-before) / waiting.Seconds()
}

// dlock run -wake-hints across the hosts: A runs a 2 s job under the lock,
// B waits for it with a 10 s poll. With hints B's job starts within a few
// seconds of A's end (the command sends its release's datagram before it
// exits: WaitHints); without, not before B's next poll, 7.5 s at the
// earliest.
func TestHostsWakeHintsCLI(t *testing.T) {
	r := needHostsRig(t)
	r.route(t, &r.a)
	r.route(t, &r.b)
	bin := buildDlock(t, t.TempDir())
	pa, pb := r.dirs(t)
	run := func(h rigHost, path string, args ...string) *exec.Cmd {
		a := hostArgv(h.aHost, append([]string{bin, "run", "-wake-hints", "auto", "-poll", "10"}, append([]string{filepath.Join(path, "lock"), "--"}, args...)...)...)
		return exec.Command(a[0], a[1:]...)
	}
	holder := run(r.a, pa, "sh", "-c", "echo held; sleep 2")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil { // A holds
		t.Fatalf("the holder on A: %v", err)
	}
	start := time.Now()
	waiter := run(r.b, pb, "true")
	if b, err := waiter.CombinedOutput(); err != nil {
		t.Fatalf("the waiter on B: %v: %s", err, b)
	}
	took := time.Since(start)
	holder.Wait()
	figure(t, "dlock run -wake-hints auto -poll 10: B's job started %.2fs after A's 2s job began", took.Seconds())
	if took > 6*time.Second {
		t.Errorf("B waited %v for a 2s job with hints: it heard of the release at its 10s poll", took)
	}
}
