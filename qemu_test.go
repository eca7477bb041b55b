//go:build linux

package dlock

// Hosts with kernels of their own: a holder in a qemu guest, on Linux's
// NFSv4.1 client (a hard mount, default attribute caching) of nfs-ganesha
// on this host, and its successor on this host, on the exported directory.
// A partition is a real one: qemu's monitor cuts the guest's link
// (set_link n0 off). Every figure is taken on this host's clock, as the
// guest's serial console lines and the host processes' lines arrive.
//
// scripts/qemu-nfs.sh sets up the rig (kernel, initramfs with this test
// binary built static, ganesha) and runs these tests; without
// DLOCK_QEMU_STATE they skip. In the guest the same binary plays the roles
// named qemu-* (qemuRole).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
)

// qemuMarker begins every line of the guest roles (and of the COMMANDs of
// dlock run in the tests), so that the kernel's lines on the console are
// not mistaken for them.
const qemuMarker = "dlock-qemu: "

// --- the guest side ----------------------------------------------------

var guestStart = time.Now()

// guestSay prints one marked line on the console, with the guest's own
// monotonic time since the role started (g=...) and its wall clock
// (wall=, in Unix nanoseconds), from which the host measures the guest's
// clock offset and rate.
func guestSay(format string, args ...any) {
	now := time.Now()
	line := qemuMarker + fmt.Sprintf(format, args...) + fmt.Sprintf(" g=%.3fs wall=%d\n", now.Sub(guestStart).Seconds(), now.UnixNano())
	os.Stdout.WriteString(line)
}

func qemuRole(role string) int {
	timeout, err := time.ParseDuration(os.Getenv("DLOCK_TIMEOUT"))
	if err != nil {
		guestSay("error DLOCK_TIMEOUT: %v", err)
		return 2
	}
	path := os.Getenv("DLOCK_PATH")
	switch role {
	case "qemu-hold":
		return guestHold(path, timeout)
	case "qemu-wait":
		return guestWait(path, timeout)
	case "qemu-run":
		return guestRun(path, timeout)
	case "qemu-counter":
		return guestCounter(timeout)
	case "qemu-agent":
		return guestAgent()
	case "qemu-worker":
		return guestWorker()
	}
	guestSay("error unknown role %s", role)
	return 2
}

// guestHold takes the lock, says when, and waits until it is told the lock
// is lost or DLOCK_HOLD has passed; then it unlocks and says what Unlock
// returned. "clock" is the guest's wall clock, for the host to measure the
// skew it was given.
func guestHold(path string, timeout time.Duration) int {
	hold, _ := time.ParseDuration(os.Getenv("DLOCK_HOLD"))
	guestSay("clock")
	l, err := New(path, WithTimeout(timeout), WithWatch(false))
	if err == nil {
		err = l.Lock(context.Background())
	}
	if err != nil {
		guestSay("error %v", err)
		return 1
	}
	lost := l.Lost() // taken now: on a stuck mount, Lost itself may block
	guestSay("held fence=%d", l.Fence())
	go func() { // for the host to follow the guest's clock
		for range time.Tick(time.Second) {
			guestSay("tick")
		}
	}()
	select {
	case <-lost:
		guestSay("lost")
	case <-time.After(hold):
		guestSay("kept")
	}
	err = l.Unlock()
	guestSay("unlock errlost=%v err=%v", errors.Is(err, ErrLost), err)
	linger()
	return 0
}

// linger keeps a guest up after its role has said all: the host may still
// need its monitor (to heal the link), and kills it when done.
func linger() {
	time.Sleep(24 * time.Hour)
}

// guestWait waits for the lock directory to appear, then waits for the
// lock, says when it has it, and keeps it for DLOCK_HOLD.
func guestWait(path string, timeout time.Duration) int {
	hold, _ := time.ParseDuration(os.Getenv("DLOCK_HOLD"))
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	l, err := New(path, WithTimeout(timeout), WithWatch(false))
	if err != nil {
		guestSay("error %v", err)
		return 1
	}
	guestSay("waiting")
	if err := l.Lock(context.Background()); err != nil {
		guestSay("error %v", err)
		return 1
	}
	guestSay("acquired fence=%d", l.Fence())
	time.Sleep(hold)
	guestSay("unlock err=%v", l.Unlock())
	linger()
	return 0
}

// guestCommand is the holder's COMMAND under dlock run: it says when it
// starts and, on SIGTERM, that it ends; SIGKILL leaves only dlock's exit.
const guestCommand = `trap 'echo "` + qemuMarker + `cmd-end TERM"; exit 143' TERM
echo "` + qemuMarker + `cmd-start"
while :; do sleep 0.1 & wait $!; done`

// guestRun runs the CLI's dlock run with guestCommand and says how it exited.
func guestRun(path string, timeout time.Duration) int {
	cmd := exec.Command("/bin/dlock", "run", "-v", "-stale-after", timeout.String(), path, "--", "/bin/sh", "-c", guestCommand)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		guestSay("error %v", err)
		return 1
	}
	guestSay("run-exit %d", code)
	linger()
	return 0
}

// guestCounter runs DLOCK_PROCS counter processes (concurrent_test.go's
// role "counter"), alternately on /m1 and /m2, two mounts of the export
// with caches of their own, DLOCK_ROUNDS critical sections each. The
// counter and the overlap detector are on the guest's own memory, so a
// miscount can only be the lock's.
func guestCounter(timeout time.Duration) int {
	procs, _ := strconv.Atoi(os.Getenv("DLOCK_PROCS"))
	rounds, _ := strconv.Atoi(os.Getenv("DLOCK_ROUNDS"))
	data := "/tmp/counter"
	err := os.MkdirAll(data, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(data, "counter"), []byte("0"), 0o644)
	}
	if err != nil {
		guestSay("error %v", err)
		return 1
	}
	start := time.Now()
	var cmds []*exec.Cmd
	for i := range procs {
		mount := fmt.Sprintf("/m%d", i%2+1)
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = append(os.Environ(), "DLOCK_TEST_CHILD=counter", "DLOCK_DATA="+data,
			"DLOCK_PATH="+filepath.Join(mount, os.Getenv("DLOCK_LOCK")), "DLOCK_ROUNDS="+strconv.Itoa(rounds),
			"DLOCK_TIMEOUT="+timeout.String())
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if err := cmd.Start(); err != nil {
			guestSay("error %v", err)
			return 1
		}
		cmds = append(cmds, cmd)
	}
	failed := 0
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			failed++
		}
	}
	b, _ := os.ReadFile(filepath.Join(data, "counter"))
	got, _ := strconv.Atoi(string(b))
	guestSay("counter got=%d want=%d failed=%d took=%.1fs", got, procs*rounds, failed, time.Since(start).Seconds())
	return 0
}

// --- the host side ------------------------------------------------------

// qemuRig is what scripts/qemu-nfs.sh up made.
type qemuRig struct {
	state, export, cli, port string
}

func needQemu(t *testing.T) qemuRig {
	t.Helper()
	state := os.Getenv("DLOCK_QEMU_STATE")
	if state == "" {
		t.Skip(`no qemu rig: set DLOCK_QEMU_STATE (as root: eval "$(scripts/qemu-nfs.sh up)")`)
	}
	r := qemuRig{state: state, export: filepath.Join(state, "export"), cli: filepath.Join(state, "bin", "dlock"),
		port: os.Getenv("DLOCK_QEMU_NFS_PORT")}
	if r.port == "" {
		r.port = "20490"
	}
	for _, f := range []string{"vmlinuz", "initrd.gz", "export", "bin/dlock"} {
		if _, err := os.Stat(filepath.Join(state, f)); err != nil {
			t.Fatalf("qemu rig in %s is incomplete (run scripts/qemu-nfs.sh up again): %v", state, err)
		}
	}
	return r
}

// dir makes a fresh directory of the export: its name, for the guest
// (under /m1, /m2), and its path on this host.
func (r qemuRig) dir(t *testing.T) (string, string) {
	t.Helper()
	name := "t-" + strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()) + "-" + lockdir.NewToken()[:8]
	host := filepath.Join(r.export, name)
	if err := os.Mkdir(host, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	return name, host
}

// stamped is a line and when it arrived here.
type stamped struct {
	at   time.Time
	text string
}

// lineLog collects stamped lines as they arrive and lets a test wait for one.
type lineLog struct {
	who  string
	t0   time.Time
	mu   sync.Mutex
	all  []stamped
	more chan struct{} // closed at the next line or at the end
	done bool
}

func newLineLog(who string) *lineLog {
	return &lineLog{who: who, t0: time.Now(), more: make(chan struct{})}
}

// read stamps the lines of rd until it ends; copies all to raw, and, with
// -v, prints the marked ones and dlock's own as they come.
func (g *lineLog) read(rd io.Reader, raw io.Writer) {
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		at := time.Now()
		text := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintf(raw, "%s %s\n", at.Format("15:04:05.000000"), text)
		if testing.Verbose() && !strings.Contains(text, qemuMarker+"tick") && (strings.Contains(text, qemuMarker) || strings.Contains(text, "dlock") || strings.Contains(text, "nfs")) {
			fmt.Printf("    %-8s %8.3fs | %s\n", g.who, at.Sub(g.t0).Seconds(), text)
		}
		g.mu.Lock()
		g.all = append(g.all, stamped{at, text})
		close(g.more)
		g.more = make(chan struct{})
		g.mu.Unlock()
	}
	g.mu.Lock()
	g.done = true
	close(g.more)
	g.mu.Unlock()
}

// find returns the first marked line whose event is event (its first
// word), waiting up to d for it.
func (g *lineLog) find(event string, d time.Duration) (stamped, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		for _, l := range g.all {
			if _, rest, ok := strings.Cut(l.text, qemuMarker); ok && (rest == event || strings.HasPrefix(rest, event+" ")) {
				g.mu.Unlock()
				return l, true
			}
		}
		more, done := g.more, g.done
		g.mu.Unlock()
		if done {
			return stamped{}, false
		}
		select {
		case <-more:
		case <-deadline.C:
			return stamped{}, false
		}
	}
}

// last returns the last marked line of event seen so far.
func (g *lineLog) last(event string) stamped {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.all) - 1; i >= 0; i-- {
		if _, rest, ok := strings.Cut(g.all[i].text, qemuMarker); ok && (rest == event || strings.HasPrefix(rest, event+" ")) {
			return g.all[i]
		}
	}
	return stamped{}
}

// msg is a marked line without its marker and the guest's times.
func msg(l stamped) string {
	_, rest, _ := strings.Cut(l.text, qemuMarker)
	if i := strings.LastIndex(rest, " g="); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// field returns the value of name=value in a marked line.
func field(line, name string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

// qemuGuest is one running guest.
type qemuGuest struct {
	*lineLog
	cmd *exec.Cmd
	mon string
}

// qemuBootWithin bounds a boot to the first marked line: about 5-10 s here.
const qemuBootWithin = 120 * time.Second

// boot starts a guest named name on the user-mode network 10.0.NET.0/24
// (its address .15, this host's loopback .2), with env on its kernel
// command line (NAME=VALUE words without spaces reach its /init as
// environment), and the extra qemu arguments. The guest is killed at cleanup if still up.
func (r qemuRig) boot(t *testing.T, name string, net int, env []string, extra ...string) *qemuGuest {
	t.Helper()
	run := filepath.Join(r.state, "run")
	os.MkdirAll(run, 0o755)
	id := name + "-" + lockdir.NewToken()[:6]
	g := &qemuGuest{lineLog: newLineLog(name), mon: filepath.Join(run, id+".mon")}
	// no_timer_check: on a loaded host the emulated IO-APIC timer can
	// miss the kernel's boot check, which then panics ("IO-APIC + timer
	// doesn't work!"); seen at load 20 by the bench's guests.
	cmdline := []string{"console=ttyS0", "panic=-1", "quiet", "loglevel=4", "no_timer_check",
		"DLOCK_NFS_PORT=" + r.port, "DLOCK_GUEST_NAME=" + name, fmt.Sprintf("DLOCK_GUEST_NET=10.0.%d", net)}
	for _, e := range env {
		if strings.ContainsAny(e, " \t\n\"") {
			t.Fatalf("kernel command line word %q has a space or quote", e)
		}
		cmdline = append(cmdline, e)
	}
	args := append([]string{"-m", "512", "-smp", "2", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-monitor", "unix:" + g.mon + ",server,nowait",
		"-pidfile", filepath.Join(run, id+".pid"),
		"-kernel", filepath.Join(r.state, "vmlinuz"), "-initrd", filepath.Join(r.state, "initrd.gz"),
		"-append", strings.Join(cmdline, " "),
		"-netdev", fmt.Sprintf("user,id=n0,net=10.0.%d.0/24", net), "-device", "virtio-net-pci,netdev=n0"}, extra...)
	g.cmd = exec.Command("qemu-system-x86_64", args...)
	stdin, err := g.cmd.StdinPipe() // kept open: the console's input
	if err != nil {
		t.Fatal(err)
	}
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd.Stderr = g.cmd.Stdout
	raw, err := os.Create(filepath.Join(run, id+".console"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		g.read(out, raw)
		g.cmd.Wait()
		raw.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		g.cmd.Process.Kill()
		<-exited
		stdin.Close()
		os.Remove(filepath.Join(run, id+".pid"))
		os.Remove(g.mon)
	})
	return g
}

// monitor gives the guest's qemu monitor one command and returns when it
// was done.
func (g *qemuGuest) monitor(t *testing.T, command string) time.Time {
	t.Helper()
	c, err := net.DialTimeout("unix", g.mon, 10*time.Second)
	if err != nil {
		t.Fatalf("qemu monitor of %s: %v", g.who, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(c)
	prompt := func() {
		var seen strings.Builder
		for !strings.HasSuffix(seen.String(), "(qemu) ") {
			b, err := rd.ReadByte()
			if err != nil {
				t.Fatalf("qemu monitor of %s, %q: %v (so far %q)", g.who, command, err, seen.String())
			}
			seen.WriteByte(b)
		}
	}
	prompt()
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		t.Fatal(err)
	}
	prompt()
	return time.Now()
}

// must waits for event on the guest's console, failing the test without it.
func (g *qemuGuest) must(t *testing.T, event string, d time.Duration) stamped {
	t.Helper()
	l, ok := g.find(event, d)
	if !ok {
		t.Fatalf("%s: no %q line within %v (console in %s)", g.who, event, d, g.mon[:len(g.mon)-4]+".console")
	}
	return l
}

// entryLog stamps every new state entry of the lock at path, as seen in
// listings of the exported directory on this host, until ctx ends.
type entryLog struct {
	mu      sync.Mutex
	changes []stamped
	changed chan struct{}
}

func watchEntries(ctx context.Context, path string) *entryLog {
	e := &entryLog{changed: make(chan struct{}, 1)}
	last := ""
	if st, err := readState(path); err == nil && st.Entries == 1 {
		last = st.e.name
		e.changes = append(e.changes, stamped{time.Now(), last})
	}
	go func() {
		for ctx.Err() == nil {
			if st, err := readState(path); err == nil && st.Entries == 1 {
				name := st.e.name
				if name != last {
					e.mu.Lock()
					e.changes = append(e.changes, stamped{time.Now(), name})
					e.mu.Unlock()
					select {
					case e.changed <- struct{}{}:
					default:
					}
					last = name
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return e
}

// next waits up to d for the entry to change after now.
func (e *entryLog) next(d time.Duration) bool {
	e.mu.Lock()
	n := len(e.changes)
	e.mu.Unlock()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		select {
		case <-e.changed:
		case <-time.After(10 * time.Millisecond):
		}
		e.mu.Lock()
		more := len(e.changes) > n
		e.mu.Unlock()
		if more {
			return true
		}
	}
	return false
}

// lastBefore returns the last change seen before at.
func (e *entryLog) lastBefore(at time.Time) stamped {
	e.mu.Lock()
	defer e.mu.Unlock()
	var last stamped
	for _, c := range e.changes {
		if c.at.Before(at) {
			last = c
		}
	}
	return last
}

// offset is how far the guest's wall clock was ahead of this host's when
// it wrote a marked line (less the console's delay, a few milliseconds).
func offset(l stamped) time.Duration {
	ns, err := strconv.ParseInt(field(l.text, "wall"), 10, 64)
	if err != nil {
		return 0
	}
	return time.Unix(0, ns).Sub(l.at)
}

// clockRate says how the guest's clock ran between two of its lines,
// against this host's: its offset at both, and its rate in parts per
// million off this host's.
func clockRate(a, b stamped) string {
	d := b.at.Sub(a.at)
	if a.at.IsZero() || b.at.IsZero() || d < 5*time.Second {
		return fmt.Sprintf("guest clock offset %+.3fs (its rate: not measured, too short a run)", offset(a).Seconds())
	}
	drift := offset(b) - offset(a)
	return fmt.Sprintf("guest clock offset %+.3fs, then %+.3fs %.1fs later (rate %+.0f ppm of this host's)",
		offset(a).Seconds(), offset(b).Seconds(), d.Seconds(), float64(drift)/float64(d)*1e6)
}

// rel formats at relative to origin, or "never".
func rel(at, origin time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%+.3fs", at.Sub(origin).Seconds())
}

// qemuTimeout is the holder's TIMEOUT in the guests: long enough for a
// guest that runs 10-50 times slower than the host to refresh in time.
const qemuTimeout = 4 * time.Second

// marginOf is the MARGIN a Lock gets by default for TIMEOUT d.
// A holder in a guest whose link is cut for 3×TIMEOUT: it must be told the
// lock is lost at least MARGIN before the successor acquires it. The
// successor is a process on the server's exported directory, or a process
// in a second guest (on a user-mode network of its own, so that the two
// NFS clients have addresses of their own).
func TestQemuNFSPartition(t *testing.T) {
	r := needQemu(t)
	t.Run("successor-on-server", func(t *testing.T) { qemuPartition(t, r, false) })
	t.Run("successor-in-guest", func(t *testing.T) { qemuPartition(t, r, true) })
}

func qemuPartition(t *testing.T, r qemuRig, inGuest bool) {
	name, host := r.dir(t)
	path := filepath.Join(host, "lock")
	env := []string{"DLOCK_PATH=/m1/" + name + "/lock", "DLOCK_TIMEOUT=" + qemuTimeout.String(), "DLOCK_HOLD=300s"}
	g := r.boot(t, "holder", 2, append([]string{"DLOCK_QEMU_ROLE=qemu-hold"}, env...))
	var w *qemuGuest
	if inGuest {
		w = r.boot(t, "waiter", 3, append([]string{"DLOCK_QEMU_ROLE=qemu-wait"}, env...))
	}
	held := g.must(t, "held", qemuBootWithin)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	entries := watchEntries(ctx, path)

	// The successor waits from now on.
	acquired := make(chan time.Time, 1)
	if inGuest {
		w.must(t, "waiting", qemuBootWithin)
		go func() {
			l, _ := w.find("acquired", 60*time.Second+10*qemuTimeout)
			acquired <- l.at
		}()
	} else {
		succ, err := New(path, WithTimeout(qemuTimeout))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second+10*qemuTimeout)
			defer cancel()
			if err := succ.Lock(wctx); err != nil {
				t.Logf("successor: %v", err)
				acquired <- time.Time{}
				return
			}
			acquired <- time.Now()
			succ.Unlock()
		}()
	}

	beat, cut, heal := cutAfterRefresh(t, g, entries)
	told, toldOK := g.find("lost", 60*time.Second)
	acq := <-acquired
	unlock, _ := g.find("unlock", 30*time.Second)

	margin := marginOf(t, WithTimeout(qemuTimeout))
	gap := acq.Sub(told.at)
	// The last refresh was issued before the server showed it (beat), so
	// the holder's deadline is beat + TIMEOUT - MARGIN at the latest, and
	// a successor, which must see that entry unchanged for TIMEOUT, cannot
	// reclaim before beat + TIMEOUT: those two are the rule. What the
	// holder's timer, the guest's scheduler and the console take to tell
	// it comes on top of its deadline, out of MARGIN.
	deadline, earliest := beat.Add(qemuTimeout-margin), beat.Add(qemuTimeout)
	late := told.at.Sub(deadline)
	where := "on the server"
	if inGuest {
		where = "in a second guest"
	}
	t.Logf("partition, successor %s: TIMEOUT %v, MARGIN %v; times from the cut (host clock):", where, qemuTimeout, margin)
	t.Logf("  holder held since %s; last refresh seen on the server %s; link cut 0; healed %s",
		rel(held.at, cut), rel(beat, cut), rel(heal, cut))
	t.Logf("  holder's deadline by %s; holder told (Lost) %s, %.3fs after it (timer, guest, console)",
		rel(deadline, cut), rel(told.at, cut), late.Seconds())
	t.Logf("  successor may reclaim from %s; successor acquired %s; told %.3fs before it", rel(earliest, cut), rel(acq, cut), gap.Seconds())
	t.Logf("  holder's Unlock: %s", msg(unlock))
	t.Logf("  holder's %s", clockRate(held, g.last("tick")))
	const slack = 50 * time.Millisecond // the server's listing against the successor's
	switch {
	case acq.IsZero():
		t.Errorf("the successor never acquired the lock of a holder cut off for 3×TIMEOUT")
	case !toldOK:
		t.Errorf("the holder was never told: the successor acquired at %s", rel(acq, cut))
	case gap <= 0:
		t.Errorf("the holder was told at %s, after the successor acquired at %s: two holders", rel(told.at, cut), rel(acq, cut))
	case acq.Before(earliest.Add(-slack)):
		t.Errorf("the successor acquired at %s, before the last refresh + TIMEOUT (%s)", rel(acq, cut), rel(earliest, cut))
	case late > margin/2:
		t.Errorf("the holder was told %.3fs after its deadline: more than half of MARGIN %v", late.Seconds(), margin)
	}
}

// cutAfterRefresh cuts the guest's link right after a refresh of its lock
// that the server saw, and heals it 3×TIMEOUT later. It returns when that
// last refresh was seen, when the link was cut and when it was healed.
func cutAfterRefresh(t *testing.T, g *qemuGuest, entries *entryLog) (beat, cut, heal time.Time) {
	t.Helper()
	if !entries.next(2 * qemuTimeout) {
		t.Fatalf("no refresh of the holder seen on the server within %v", 2*qemuTimeout)
	}
	cut = g.monitor(t, "set_link n0 off")
	beat = entries.lastBefore(cut).at
	time.Sleep(time.Until(cut.Add(3 * qemuTimeout))) // the partition's length
	heal = g.monitor(t, "set_link n0 on")
	return beat, cut, heal
}

// Under dlock run, the holder's COMMAND (in the guest whose link is cut)
// must be dead before the successor's COMMAND (on this host) starts.
func TestQemuNFSRunPartition(t *testing.T) {
	r := needQemu(t)
	name, host := r.dir(t)
	path := filepath.Join(host, "lock")
	g := r.boot(t, "holder", 2, []string{"DLOCK_QEMU_ROLE=qemu-run", "DLOCK_PATH=/m1/" + name + "/lock",
		"DLOCK_TIMEOUT=" + qemuTimeout.String()})
	started := g.must(t, "cmd-start", qemuBootWithin)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	entries := watchEntries(ctx, path)

	// The successor's dlock run waits on this host from now on.
	s := newLineLog("succ")
	s.t0 = g.t0
	succ := exec.Command(r.cli, "run", "-v", "-stale-after", qemuTimeout.String(), path, "--",
		"/bin/sh", "-c", `echo "`+qemuMarker+`cmd-start"`)
	out, err := succ.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	succ.Stderr = succ.Stdout
	raw, err := os.Create(filepath.Join(r.state, "run", "succ-"+name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := succ.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() { s.read(out, raw); close(read) }()
	defer func() { succ.Process.Kill(); <-read; succ.Wait() }()

	beat, cut, heal := cutAfterRefresh(t, g, entries)
	exit, exitOK := g.find("run-exit", 60*time.Second)
	end, endOK := g.find("cmd-end", 0)
	succStart, succOK := s.find("cmd-start", 30*time.Second)

	dead := exit.at // an upper bound: dlock run exits after its COMMAND
	if endOK {
		dead = end.at
	}
	t.Logf("dlock run across a partition: -stale-after %v, default -grace; times from the cut (host clock):", qemuTimeout)
	t.Logf("  holder's COMMAND started %s; last refresh seen on the server %s; link cut 0; healed %s",
		rel(started.at, cut), rel(beat, cut), rel(heal, cut))
	t.Logf("  holder's COMMAND ended (TERM) %s; holder's dlock run exited %s (%s); successor's COMMAND started %s; %.3fs apart",
		rel(end.at, cut), rel(exit.at, cut), msg(exit), rel(succStart.at, cut), succStart.at.Sub(dead).Seconds())
	switch {
	case !succOK:
		t.Errorf("the successor's COMMAND never started")
	case !exitOK:
		t.Errorf("the holder's COMMAND was still running %v after the link came back; the successor's started at %s",
			60*time.Second, rel(succStart.at, cut))
	case !dead.Before(succStart.at):
		t.Errorf("the holder's COMMAND was dead only at %s, the successor's started at %s: %.3fs together",
			rel(dead, cut), rel(succStart.at, cut), dead.Sub(succStart.at).Seconds())
	}
}

// qemuMaxSkew is the clock bound (WithMaxClockSkew) of the waiters in
// TestQemuNFSSkew.
const qemuMaxSkew = 10 * time.Second

// A live holder in a guest whose clock is set apart from this host's
// (-rtc base=...) must never be reclaimed while the skew is within the
// waiters' bound: neither by a waiter that watches it for 3×TIMEOUT nor by
// fresh waiters (PATIENCE 0) arriving every half second. Beyond the bound
// the outcome is printed, not judged.
func TestQemuNFSSkew(t *testing.T) {
	r := needQemu(t)
	for _, c := range []struct {
		name   string
		offset time.Duration
	}{
		{"behind-within", -2 * qemuTimeout},
		{"ahead-within", 2 * qemuTimeout},
		{"behind-beyond", -30 * time.Second},
		{"ahead-beyond", 30 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			within := c.offset.Abs() <= qemuMaxSkew
			name, host := r.dir(t)
			path := filepath.Join(host, "lock")
			base := time.Now().UTC().Add(c.offset).Format("2006-01-02T15:04:05")
			g := r.boot(t, "holder", 2, []string{"DLOCK_QEMU_ROLE=qemu-hold", "DLOCK_PATH=/m1/" + name + "/lock",
				"DLOCK_TIMEOUT=" + qemuTimeout.String(), "DLOCK_HOLD=300s"}, "-rtc", "base="+base)
			clk := g.must(t, "clock", qemuBootWithin)
			skew := offset(clk)
			held := g.must(t, "held", qemuBootWithin)

			var logs strings.Builder
			var logMu sync.Mutex
			logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelWarn}))
			opts := []Option{WithTimeout(qemuTimeout), WithMaxClockSkew(qemuMaxSkew), WithLogger(logger)}

			end := held.at.Add(3 * qemuTimeout)
			ctx, cancel := context.WithDeadline(context.Background(), end)
			defer cancel()
			waiter, err := New(path, opts...)
			if err != nil {
				t.Fatal(err)
			}
			took := make(chan time.Time, 1)
			go func() {
				if waiter.Lock(ctx) == nil {
					took <- time.Now()
					return
				}
				took <- time.Time{}
			}()
			var fresh time.Time
			for fresh.IsZero() && time.Now().Before(end) {
				l, err := New(path, opts...)
				if err != nil {
					t.Fatal(err)
				}
				if ok, _ := l.TryLock(); ok {
					fresh = time.Now()
					cancel()
					l.Unlock()
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			waited := <-took
			if !waited.IsZero() {
				waiter.Unlock()
			}
			lost, _ := g.find("lost", 0)
			if !waited.IsZero() || !fresh.IsZero() {
				lost, _ = g.find("lost", 2*qemuTimeout) // when the reclaimed holder learns it
			}
			last := g.last("tick")
			if last.at.IsZero() {
				last = held
			}
			t.Logf("skew %s: guest clock set %v from this host's, measured %+.3fs; bound %v; TIMEOUT %v; from the holder's acquisition (host clock):",
				c.name, c.offset, skew.Seconds(), qemuMaxSkew, qemuTimeout)
			t.Logf("  waiter (3×TIMEOUT) acquired %s; first fresh waiter (every 0.5 s) acquired %s; holder told lost %s",
				rel(waited, held.at), rel(fresh, held.at), rel(lost.at, held.at))
			t.Logf("  %s", clockRate(clk, last))
			logMu.Lock()
			logged := logs.String()
			logMu.Unlock()
			// Each fresh waiter logs what it saw: print each kind once.
			seen := map[string]int{}
			var kinds []string
			for _, line := range strings.Split(strings.TrimSpace(logged), "\n") {
				if line != "" && seen[logKind(line)] == 0 {
					kinds = append(kinds, line)
				}
				seen[logKind(line)]++
			}
			for _, line := range kinds {
				t.Logf("  waiters' log, %d× %s; the first: %s", seen[logKind(line)], logKind(line), line)
			}
			if within && (!waited.IsZero() || !fresh.IsZero()) {
				t.Errorf("a live holder whose clock is %v off, within the bound %v, was reclaimed", c.offset, qemuMaxSkew)
			}
		})
	}
}

// logKind is the message of a slog text line (msg="..."), or the line.
func logKind(line string) string {
	i, j := strings.Index(line, "msg="), strings.Index(line, " path=")
	if i < 0 || j < i {
		return line
	}
	return line[i:j]
}

// lockedWriter serialises the writes of the waiters' loggers.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// The hidden-style counter in one guest: DLOCK_QEMU_PROCS (6) processes
// split across two NFSv4 mounts with separate caches (nosharecache), each
// DLOCK_QEMU_ROUNDS (200) critical sections; the counter must be exact.
func TestQemuNFSCounter(t *testing.T) {
	r := needQemu(t)
	procs, rounds := 6, 200
	if n, err := strconv.Atoi(os.Getenv("DLOCK_QEMU_PROCS")); err == nil {
		procs = n
	}
	if n, err := strconv.Atoi(os.Getenv("DLOCK_QEMU_ROUNDS")); err == nil {
		rounds = n
	}
	name, _ := r.dir(t)
	g := r.boot(t, "counter", 2, []string{"DLOCK_QEMU_ROLE=qemu-counter", "DLOCK_MOUNTS=2", "DLOCK_LOCK=" + name + "/lock",
		"DLOCK_PROCS=" + strconv.Itoa(procs), "DLOCK_ROUNDS=" + strconv.Itoa(rounds), "DLOCK_TIMEOUT=10s"})
	up := g.must(t, "up", qemuBootWithin)
	res := g.must(t, "counter", 30*time.Minute)
	want := strconv.Itoa(procs * rounds)
	t.Logf("counter in one guest, two NFSv4 mounts: %d processes × %d rounds: %s (%.1fs from boot to the result)",
		procs, rounds, msg(res), res.at.Sub(up.at).Seconds())
	if field(res.text, "got") != want || field(res.text, "failed") != "0" {
		t.Errorf("counter: %s, want got=%s failed=0", res.text, want)
	}
}
