//go:build linux

package dlock

// Tests across "hosts" that are really other hosts: every process of a
// host runs in network, pid and UTS namespaces of its own, so that
// dlock's same-host shortcuts (pid checks) do not apply and what is
// tested is the TIMEOUT path, the holder's deadline and the clock rules.
//
//   - The fault tests (TestHosts...) need the rig of scripts/hosts.sh: a
//     private sshd in a network namespace serving one export to host A and
//     host B, each with its own network namespace and sshfs mount. They
//     skip unless its variables are set (eval "$(scripts/hosts.sh up)").
//     The holder runs on host A, its successor on host B; the test hangs,
//     cuts or kills A's view of the filesystem and prints, on one clock
//     (CLOCK_MONOTONIC: one kernel), when the holder was told and when the
//     successor acquired.
//   - The clock-skew tests (TestSkew...) need no rig: the holder runs in
//     pid and UTS namespaces of its own (unshare, as root) over a local
//     directory, with its clock offset by DLOCK_HOSTS_SKEW.
//
// The children are this test binary again, playing the roles "holder",
// "waiter", "command" and "command-child" (roles_linux_test.go).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock/internal/lockdir"
)

// realOffsetClock is the real clock read off by off: its times are
// written into the lock (the skew other hosts see); durations and timers
// are the real clock's, as a host whose clock is set wrong still counts
// seconds right. (deadline_test.go's offsetClock is the mock clock's.)
type realOffsetClock struct {
	clock.Clock
	off time.Duration
}

func (c realOffsetClock) Now() time.Time                  { return c.Clock.Now().Add(c.off) }
func (c realOffsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c realOffsetClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }
func (c realOffsetClock) WithDeadline(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.Until(d))
}

// --- the children ----------------------------------------------------------

// childSay writes one line "KIND MONO [ARGS...]" to stdout: MONO is
// CLOCK_MONOTONIC in nanoseconds, the clock the parent stamps faults with.
var childMu sync.Mutex

func childSay(kind string, args ...any) {
	childMu.Lock()
	defer childMu.Unlock()
	fmt.Fprintln(os.Stdout, append([]any{kind, monoNow()}, args...)...)
}

func envDuration(name string, def time.Duration) time.Duration {
	d, err := time.ParseDuration(os.Getenv(name))
	if err != nil {
		return def
	}
	return d
}

// childOptions are the options a child's Lock gets from its environment.
func childOptions() []Option {
	opts := []Option{
		WithTimeout(envDuration("DLOCK_HOSTS_TIMEOUT", 2*time.Second)),
		WithPollInterval(envDuration("DLOCK_HOSTS_POLL", 100*time.Millisecond)),
	}
	if d := envDuration("DLOCK_HOSTS_SKEW", 0); d != 0 {
		opts = append(opts, WithClock(realOffsetClock{clock.New(), d}))
	}
	if d := envDuration("DLOCK_HOSTS_MAXSKEW", -1); d >= 0 {
		opts = append(opts, WithMaxClockSkew(d))
	}
	if a, ok := os.LookupEnv("DLOCK_HOSTS_HINTS"); ok {
		opts = append(opts, WithWakeHints(strings.TrimPrefix(a, "auto")))
	}
	return opts
}

// commandGrandchild is the role "command-child": the COMMAND's own child,
// which says it started and lives until killed.
func commandGrandchild() int {
	commandRecord("child-start", os.Getpid())
	for {
		time.Sleep(time.Hour) // until killed (select{} would be a deadlock)
	}
}

// lockChild takes the lock at DLOCK_HOSTS_PATH and says so ("acquired
// FENCE"), says "lost LATE" when Lost closes (LATE: nanoseconds since the
// acquisition's deadline) and "beat" after each
// heartbeat, then obeys its stdin: "check" says whether the lock is still
// its own ("check LOST MINE"), "unlock" unlocks ("unlock ok|lost|err:..."),
// "exit" or the end of stdin ends it. A holder must get the lock at once;
// a waiter says "blocked" when it first waits.
func lockChild(role string) int {
	path := os.Getenv("DLOCK_HOSTS_PATH")
	l, err := New(path, childOptions()...)
	if err != nil {
		childSay("error", strconv.Quote(err.Error()))
		return 1
	}
	l.testBeat = func() { childSay("beat") }
	var once sync.Once
	l.testBlocked = func() { once.Do(func() { childSay("blocked") }) }
	ctx, cancel := context.WithTimeout(context.Background(), envDuration("DLOCK_HOSTS_WAIT", 2*time.Minute))
	defer cancel()
	if role == "holder" {
		var ok bool
		if ok, err = l.TryLock(); err == nil && !ok {
			err = errors.New("the lock is busy")
		}
	} else {
		err = l.Lock(ctx)
	}
	if err != nil {
		childSay("error", strconv.Quote(err.Error()))
		return 1
	}
	childSay("acquired", l.Fence())
	lost := l.Lost()
	go func() {
		<-lost
		// And how long after the acquisition's deadline (negative: told
		// before it, by an ENOENT).
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		childSay("lost", time.Since(deadline).Nanoseconds())
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "check":
			isLost := false
			select {
			case <-lost:
				isLost = true
			default:
			}
			st, err := Inspect(path)
			childSay("check", isLost, err == nil && st.Held && st.Fence == l.Fence())
		case "unlock":
			childSay("unlocking")
			childSay("unlock", unlockResult(l.Unlock()))
		case "exit":
			return 0
		}
	}
	return 0
}

func unlockResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrLost):
		return "lost"
	}
	return "err:" + strconv.Quote(err.Error())
}

// commandRecord appends "KIND MONO PID" to DLOCK_HOSTS_REC.
func commandRecord(kind string, pid int) {
	f, err := os.OpenFile(os.Getenv("DLOCK_HOSTS_REC"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(f, "%s %d %d\n", kind, monoNow(), pid)
	f.Close()
}

// commandChild is the COMMAND of `dlock run`: it takes an flock on
// DLOCK_HOSTS_FLOCK (a local file; its children inherit it, so the flock
// is free once all of them are dead), records "start", and runs until its
// stdin ends (then "end", exit 0) or a signal ("term", exit 143). With
// DLOCK_HOSTS_CMD_CHILD=1 it starts a child that handles no signal
// (SIGTERM kills it) and records "child-start".
func commandChild() int {
	f, err := os.OpenFile(os.Getenv("DLOCK_HOSTS_FLOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "command:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	commandRecord("start", os.Getpid())
	if os.Getenv("DLOCK_HOSTS_CMD_CHILD") == "1" {
		c := exec.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), "DLOCK_TEST_CHILD=command-child")
		c.ExtraFiles = []*os.File{f}
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "command:", err)
			return 1
		}
	}
	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-sigs:
		commandRecord("term", os.Getpid())
		return 143
	case <-eof:
		commandRecord("end", os.Getpid())
		return 0
	}
}

// --- processes on hosts, seen from the parent -------------------------------

// aHost is where a process runs: its own pid and UTS namespaces (host name
// name), in the network namespace netns if there is one.
type aHost struct {
	name, netns string
}

// hostArgv is the command line that runs argv on h.
func hostArgv(h aHost, argv ...string) []string {
	var a []string
	if h.netns != "" {
		a = append(a, "nsenter", "--net=/run/netns/"+h.netns)
	}
	a = append(a, "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--uts",
		"sh", "-c", `hostname "$0" && exec "$@"`, h.name)
	return append(a, argv...)
}

// procLine is a line a child wrote, with the parent's CLOCK_MONOTONIC when
// it was read.
type procLine struct {
	text string
	read int64
}

// mono is the CLOCK_MONOTONIC the child wrote in the line's second field
// (the read time if there is none).
func (l procLine) mono() int64 {
	f := strings.Fields(l.text)
	if len(f) > 1 {
		if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			return n
		}
	}
	return l.read
}

// hostProc is a process on a host, with every line of its stdout (and of
// its stderr, kept apart) stamped as it arrives.
type hostProc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu       sync.Mutex
	cond     *sync.Cond
	out, err []procLine
	closed   int // streams at EOF
	done     chan struct{}
	exitErr  error
}

func startOnHost(t *testing.T, h aHost, env []string, argv ...string) *hostProc {
	t.Helper()
	a := hostArgv(h, argv...)
	cmd := exec.Command(a[0], a[1:]...)
	cmd.Env = append(os.Environ(), env...)
	p := &hostProc{name: h.name, cmd: cmd, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q on host %s: %v", argv, h.name, err)
	}
	collect := func(r io.Reader, into *[]procLine) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			at := monoNow()
			p.mu.Lock()
			*into = append(*into, procLine{sc.Text(), at})
			p.cond.Broadcast()
			p.mu.Unlock()
		}
		p.mu.Lock()
		p.closed++
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	go collect(stdout, &p.out)
	go collect(stderr, &p.err)
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // unshare: --kill-child takes the host's process along
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Errorf("host %s: %q did not end after SIGKILL (stuck in a frozen mount?)", h.name, argv)
		}
	})
	return p
}

// wait returns the first line of stdout (or stderr) starting with prefix,
// waiting until d has passed.
func (p *hostProc) wait(prefix string, fromStderr bool, d time.Duration) (procLine, bool) {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		lines := p.out
		if fromStderr {
			lines = p.err
		}
		for _, l := range lines {
			if strings.HasPrefix(l.text, prefix) {
				return l, true
			}
		}
		if p.closed == 2 || !time.Now().Before(deadline) {
			return procLine{}, false
		}
		p.cond.Wait()
	}
}

// lines returns the stdout lines starting with prefix so far.
func (p *hostProc) lines(prefix string) []procLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	var r []procLine
	for _, l := range p.out {
		if strings.HasPrefix(l.text, prefix) {
			r = append(r, l)
		}
	}
	return r
}

func (p *hostProc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, l := range p.err {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

func (p *hostProc) send(line string) { io.WriteString(p.stdin, line+"\n") }

// inner is the PID (in our pid namespace) of the process that runs on the
// host: the child of unshare, the init of the host's pid namespace.
func (p *hostProc) inner(t *testing.T) int {
	t.Helper()
	pid := p.cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			if c, err := strconv.Atoi(f[0]); err == nil {
				return c
			}
		}
	}
	t.Fatalf("host %s: the process under unshare (pid %d) never appeared", p.name, pid)
	return 0
}

// canUnshare reports whether this process may make namespaces (root).
var canUnshare = sync.OnceValue(func() error {
	out, err := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--uts", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("unshare --pid --uts: %v: %s", err, out)
	}
	return nil
})

// since formats the time from base to at (CLOCK_MONOTONIC ns), or "never".
func since(base, at int64) string {
	if at == 0 {
		return "never"
	}
	return fmt.Sprintf("%+.3fs", time.Duration(at-base).Seconds())
}

// figure prints one line of figures: to the test log, and to stdout with -v.
func figure(t *testing.T, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	if testing.Verbose() {
		fmt.Println("hosts: " + s) // at once, and greppable
	} else {
		t.Log(s)
	}
}

// marginOf is the MARGIN a Lock with these options gets.
func marginOf(t *testing.T, opts ...Option) time.Duration {
	t.Helper()
	l, err := New(filepath.Join(t.TempDir(), "m"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l.cfg.margin
}

// --- the rig of scripts/hosts.sh --------------------------------------------

type hostsRig struct {
	script, state, export string
	serverNS              string
	a, b                  rigHost
}

// rigHost is one client host of the rig and its view of the export.
type rigHost struct {
	aHost
	key                  string // "a" or "b", as the script names it
	mount, dev, srvDev   string
	sshfsPID, sessionPID int
}

func needHostsRig(t *testing.T) *hostsRig {
	t.Helper()
	if os.Getenv("DLOCK_HOSTS_A_MOUNT") == "" || os.Getenv("DLOCK_HOSTS_B_MOUNT") == "" {
		t.Skip(`no hosts rig: run eval "$(scripts/hosts.sh up)" as root first`)
	}
	if os.Geteuid() != 0 {
		t.Skip("the hosts rig's faults need root")
	}
	script, err := filepath.Abs(filepath.Join("scripts", "hosts.sh"))
	if err != nil {
		t.Fatal(err)
	}
	theRigOnce.Do(func() {
		theRig = &hostsRig{script: script}
		theRig.load(os.Getenv)
	})
	return theRig
}

// The rig, as loaded from the environment and updated by remounts, for
// all the tests of the test binary.
var (
	theRig     *hostsRig
	theRigOnce sync.Once
)

func (r *hostsRig) load(get func(string) string) {
	r.state, r.export, r.serverNS = get("DLOCK_HOSTS_STATE"), get("DLOCK_HOSTS_EXPORT"), get("DLOCK_HOSTS_SERVER_NETNS")
	for _, h := range []*rigHost{&r.a, &r.b} {
		if h.key == "" {
			h.key = map[*rigHost]string{&r.a: "a", &r.b: "b"}[h]
		}
		v := func(what string) string { return get("DLOCK_HOSTS_" + strings.ToUpper(h.key) + "_" + what) }
		h.name, h.netns = strings.ToUpper(h.key), v("NETNS")
		h.mount, h.dev, h.srvDev = v("MOUNT"), v("DEV"), v("SERVER_DEV")
		h.sshfsPID, _ = strconv.Atoi(v("SSHFS_PID"))
		h.sessionPID, _ = strconv.Atoi(v("SESSION_PID"))
		// A remount since the variables were exported left newer PIDs in
		// the state directory.
		if pid, err := readPIDFile(filepath.Join(r.state, "sshfs-"+h.key+".pid")); err == nil {
			h.sshfsPID = pid
			h.sessionPID, _ = readPIDFile(filepath.Join(r.state, "session-"+h.key+".pid"))
		}
	}
}

func readPIDFile(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// remount gives host h a fresh mount (scripts/hosts.sh remount), after a
// fault that killed or detached it, and takes the new PIDs.
func (r *hostsRig) remount(t *testing.T, h *rigHost) {
	t.Helper()
	cmd := exec.Command("bash", r.script, "remount", h.key, r.state)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s remount %s: %v", r.script, h.key, err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			vars[k] = v
		}
	}
	r.load(func(k string) string { return vars[k] })
}

// dirs makes a fresh directory in the export and returns it as host A and
// host B see it.
func (r *hostsRig) dirs(t *testing.T) (string, string) {
	t.Helper()
	name := "t-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + lockdir.NewToken()[:8]
	if err := os.Mkdir(filepath.Join(r.export, name), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Join(r.export, name)) })
	return filepath.Join(r.a.mount, name), filepath.Join(r.b.mount, name)
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%q: %v: %s", argv, err, out)
	}
}

func signalPID(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if pid <= 0 {
		t.Skip("the rig exported no PID for this fault")
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}

// A fault done to host A: inject starts it and returns what ends it, or
// nil if nothing can (the mount is gone: the host is remounted after).
type hostFault struct {
	name   string
	inject func(t *testing.T, r *hostsRig, holderPID int) (heal func())
	// The holder calls Unlock while the fault lasts (after its successor
	// acquired, or 2 TIMEOUTs): its release is in flight when the mount
	// comes back, and must not free the successor's lock.
	unlockDuring bool
}

// lossyLink: tc netem heavy loss and delay where the kernel has netem,
// else a token bucket so small that it delays and drops most packets.
func lossyLink(t *testing.T, ns, dev string) {
	t.Helper()
	if exec.Command("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", "300ms", "200ms", "loss", "40%").Run() == nil {
		return
	}
	run(t, "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", "8kbit", "burst", "1600", "latency", "200ms")
}

var hostFaults = []hostFault{
	{name: "freeze-sshfs", inject: func(t *testing.T, r *hostsRig, _ int) func() {
		signalPID(t, r.a.sshfsPID, syscall.SIGSTOP)
		return func() { signalPID(t, r.a.sshfsPID, syscall.SIGCONT) }
	}},
	{name: "freeze-session", inject: func(t *testing.T, r *hostsRig, _ int) func() {
		signalPID(t, r.a.sessionPID, syscall.SIGSTOP)
		return func() { signalPID(t, r.a.sessionPID, syscall.SIGCONT) }
	}},
	{name: "link-down", inject: func(t *testing.T, r *hostsRig, _ int) func() {
		run(t, "ip", "-n", r.a.netns, "link", "set", r.a.dev, "down")
		return func() { run(t, "ip", "-n", r.a.netns, "link", "set", r.a.dev, "up") }
	}},
	{name: "lossy-link", inject: func(t *testing.T, r *hostsRig, _ int) func() {
		lossyLink(t, r.a.netns, r.a.dev)
		lossyLink(t, r.serverNS, r.a.srvDev)
		return func() {
			run(t, "tc", "-n", r.a.netns, "qdisc", "del", "dev", r.a.dev, "root")
			run(t, "tc", "-n", r.serverNS, "qdisc", "del", "dev", r.a.srvDev, "root")
		}
	}},
	{name: "kill-sshfs", inject: func(t *testing.T, r *hostsRig, _ int) func() {
		signalPID(t, r.a.sshfsPID, syscall.SIGKILL)
		return nil
	}},
	{name: "lazy-unmount", inject: func(t *testing.T, r *hostsRig, holderPID int) func() {
		// The holder runs in a copy of our mount namespace: detach the
		// mount there, and here.
		// (-p too: umount reads /proc/self/mountinfo, and that /proc is the
		// holder's pid namespace's.)
		run(t, "nsenter", "-t", strconv.Itoa(holderPID), "-m", "-p", "umount", "-l", r.a.mount)
		run(t, "umount", "-l", r.a.mount)
		return nil
	}},
	{name: "freeze-unlock-thaw", unlockDuring: true, inject: func(t *testing.T, r *hostsRig, _ int) func() {
		signalPID(t, r.a.sshfsPID, syscall.SIGSTOP)
		return func() { signalPID(t, r.a.sshfsPID, syscall.SIGCONT) }
	}},
}

// hostsTimeout is the holder's TIMEOUT in the fault tests:
// DLOCK_HOSTS_TIMEOUT, default 2s.
func hostsTimeout(t *testing.T) time.Duration {
	d := envDuration("DLOCK_HOSTS_TIMEOUT", 2*time.Second)
	if d <= 0 {
		t.Fatalf("DLOCK_HOSTS_TIMEOUT=%q", os.Getenv("DLOCK_HOSTS_TIMEOUT"))
	}
	return d
}

// hostsRounds is how many times each case runs: DLOCK_HOSTS_ROUNDS,
// default 1.
func hostsRounds() int {
	n, err := strconv.Atoi(os.Getenv("DLOCK_HOSTS_ROUNDS"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// eachFault runs do for every fault (DLOCK_HOSTS_FAULTS: a comma-separated
// subset), hostsRounds times, remounting host A after faults that leave it
// without a mount.
func eachFault(t *testing.T, r *hostsRig, do func(t *testing.T, f hostFault)) {
	only := os.Getenv("DLOCK_HOSTS_FAULTS")
	for _, f := range hostFaults {
		if only != "" && !slices.Contains(strings.Split(only, ","), f.name) {
			continue
		}
		for round := range hostsRounds() {
			name := f.name
			if hostsRounds() > 1 {
				name += "#" + strconv.Itoa(round+1)
			}
			t.Run(name, func(t *testing.T) {
				t.Cleanup(func() { r.heal(t, &r.a) })
				do(t, f)
			})
		}
	}
}

// heal undoes whatever a fault left on host h: its link up and without a
// queueing discipline, its sshfs and server session running, and a mount
// that answers (else a fresh one).
func (r *hostsRig) heal(t *testing.T, h *rigHost) {
	t.Helper()
	exec.Command("ip", "-n", h.netns, "link", "set", h.dev, "up").Run()
	r.route(t, h) // (lost with the link)
	exec.Command("tc", "-n", h.netns, "qdisc", "del", "dev", h.dev, "root").Run()
	exec.Command("tc", "-n", r.serverNS, "qdisc", "del", "dev", h.srvDev, "root").Run()
	for _, pid := range []int{h.sshfsPID, h.sessionPID} {
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	if syscall.Kill(h.sshfsPID, 0) != nil || !mountAnswers(h.mount) {
		r.remount(t, h)
	}
}

// mountAnswers reports whether a mount point is mounted and answers.
func mountAnswers(m string) bool {
	done := make(chan bool, 1)
	go func() {
		var st, parent syscall.Stat_t
		done <- syscall.Stat(m, &st) == nil && syscall.Stat(filepath.Dir(m), &parent) == nil && st.Dev != parent.Dev
	}()
	select {
	case ok := <-done:
		return ok
	case <-time.After(5 * time.Second):
		return false
	}
}

// faultTimeline is what a fault case measured, on CLOCK_MONOTONIC.
type faultTimeline struct {
	fault, heal int64 // heal 0: the fault had no end
	told        int64 // the holder was told (Lost closed; under dlock run: its COMMAND dead)
	acquired    int64 // the successor acquired (under dlock run: its COMMAND started)
	released    int64 // the holder released normally (Unlock ok), if it did
	deadline    int64 // the holder's deadline when it was told, if known
}

// lostLatency is how long after its deadline a holder may be told (the
// timer firing, the goroutine that reads Lost running) and still count as
// told at its deadline.
const lostLatency = 50 * time.Millisecond

// verdict: the holder told strictly before the successor acquired, by at
// least need; or never told, having kept the lock and released it before
// the successor acquired. A holder told at its deadline (within
// lostLatency) passes if that deadline was at least need before the
// successor acquired: MARGIN is the library's promise from the deadline,
// and it covers the holder's reaction.
func (tl faultTimeline) verdict(need, margin time.Duration) (bool, string) {
	gap := time.Duration(tl.acquired - tl.told)
	late := time.Duration(tl.told - tl.deadline)
	switch {
	case tl.told != 0 && tl.acquired != 0 && gap > 0 && gap < need && tl.deadline != 0 && late > 0:
		switch {
		case late > lostLatency:
			return false, fmt.Sprintf("told %v after its deadline", late.Round(time.Millisecond))
		case time.Duration(tl.acquired-tl.deadline) < need:
			return false, "its deadline was less than MARGIN before the successor acquired"
		}
		return true, fmt.Sprintf("told %v after its deadline, which was %v before the successor acquired", late.Round(time.Millisecond), time.Duration(tl.acquired-tl.deadline).Round(time.Millisecond))
	}
	switch {
	case tl.acquired == 0:
		return false, "the successor never acquired"
	case tl.told == 0 && tl.released != 0 && tl.released <= tl.acquired:
		return true, "the holder kept the lock through the fault and released it"
	case tl.told == 0:
		return false, "the holder was never told"
	case gap > 0 && gap >= need && gap < margin:
		return true, "before the successor, by less than MARGIN"
	case gap > 0 && gap >= need:
		return true, ""
	case gap > 0:
		return false, "told, but by less than MARGIN"
	}
	return false, "told only after the successor acquired"
}

// print prints the figures and judges them: need is how long before the
// successor the holder must have been told.
func (tl faultTimeline) print(t *testing.T, mode, fault string, need, margin time.Duration) {
	t.Helper()
	ok, why := tl.verdict(need, margin)
	gap := "-"
	if tl.told != 0 && tl.acquired != 0 {
		gap = fmt.Sprintf("%+.3fs", time.Duration(tl.acquired-tl.told).Seconds())
	}
	heal := "none"
	if tl.heal != 0 {
		heal = since(tl.fault, tl.heal)
	}
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	if why != "" {
		verdict += " (" + why + ")"
	}
	deadline := ""
	if tl.deadline != 0 {
		deadline = " (deadline " + since(tl.fault, tl.deadline) + ")"
	}
	figure(t, "%-4s %-18s fault +0.000s heal %-8s told %-8s acquired %-8s gap %-8s MARGIN %v  %s%s",
		mode, fault, heal, since(tl.fault, tl.told), since(tl.fault, tl.acquired), gap, margin, verdict, deadline)
	if !ok {
		t.Errorf("%s %s: %s", mode, fault, why)
	}
}

// runFault injects f on host A for 3 TIMEOUTs (or, with no end, until the
// successor acquires) and heals it. unlock is called while the fault
// lasts if f.unlockDuring, once the successor acquired or 2 TIMEOUTs
// passed.
func runFault(t *testing.T, r *hostsRig, f hostFault, timeout time.Duration, holderPID int, successorAcquired func(time.Duration) bool, unlock func()) (tl faultTimeline) {
	t.Helper()
	tl.fault = monoNow()
	heal := f.inject(t, r, holderPID)
	healed := false
	doHeal := func() {
		if heal != nil && !healed {
			healed = true
			heal()
			tl.heal = monoNow()
		}
	}
	t.Cleanup(doHeal) // before the processes are killed: a frozen one cannot be
	if f.unlockDuring {
		successorAcquired(2 * timeout)
		unlock()
	}
	if heal == nil {
		successorAcquired(3*timeout + 20*time.Second)
		return tl
	}
	time.Sleep(time.Duration(tl.fault + int64(3*timeout) - monoNow())) // the fault lasts 3 TIMEOUTs
	doHeal()
	return tl
}

// The fault cases with the library: a holder on host A (TryLock, then
// waiting for its stdin), a waiter on host B; the fault on A's view of the
// filesystem; told is when the holder's Lost closed, acquired when the
// successor's Lock returned.
func TestHostsFaults(t *testing.T) {
	r := needHostsRig(t)
	timeout := hostsTimeout(t)
	margin := marginOf(t, WithTimeout(timeout))
	eachFault(t, r, func(t *testing.T, f hostFault) {
		dA, dB := r.dirs(t)
		env := []string{"DLOCK_HOSTS_TIMEOUT=" + timeout.String(), "DLOCK_HOSTS_POLL=100ms"}
		self := []string{os.Args[0], "-test.run=^$"}
		holder := startOnHost(t, r.a.aHost, append(env, "DLOCK_TEST_CHILD=holder", "DLOCK_HOSTS_PATH="+filepath.Join(dA, "lock")), self...)
		if _, ok := holder.wait("acquired", false, 30*time.Second); !ok {
			t.Fatalf("the holder on host A did not acquire: %s", holder.stderrText())
		}
		waiter := startOnHost(t, r.b.aHost, append(env, "DLOCK_TEST_CHILD=waiter", "DLOCK_HOSTS_PATH="+filepath.Join(dB, "lock")), self...)
		if _, ok := waiter.wait("blocked", false, 30*time.Second); !ok {
			t.Fatalf("the waiter on host B did not wait: %s", waiter.stderrText())
		}
		acquired := func(d time.Duration) bool { _, ok := waiter.wait("acquired", false, d); return ok }
		tl := runFault(t, r, f, timeout, holder.inner(t), acquired, func() { holder.send("unlock") })
		// After the fault: the successor gets the lock (at the latest once
		// the holder, told or not, unlocks), and keeps it.
		if !f.unlockDuring {
			if !acquired(5 * time.Second) {
				holder.send("unlock")
			}
		}
		if l, ok := waiter.wait("acquired", false, 30*time.Second); ok {
			tl.acquired = l.mono()
		}
		if l, ok := holder.wait("lost", false, 10*time.Second); ok {
			tl.told = l.mono()
			if f := strings.Fields(l.text); len(f) == 3 {
				late, _ := strconv.ParseInt(f[2], 10, 64)
				tl.deadline = tl.told - late
			}
		}
		if !f.unlockDuring {
			holder.send("unlock") // (a second time is ErrNotHeld: the first answer counts)
		}
		unlocked, ok := holder.wait("unlock ", false, 30*time.Second)
		if ok && strings.HasSuffix(unlocked.text, " ok") {
			if l, ok := holder.wait("unlocking", false, 0); ok {
				tl.released = l.mono()
			}
		}
		tl.print(t, "lib", f.name, margin, margin)
		figure(t, "     %-18s holder's Unlock: %s; successor's check: %s", "", lineRest(unlocked), lineRest(checkSuccessor(t, waiter)))
	})
}

// lineRest is a child's line without its kind and time.
func lineRest(l procLine) string {
	f := strings.Fields(l.text)
	if len(f) < 2 {
		return "(nothing)"
	}
	return strings.Join(f[2:], " ")
}

// checkSuccessor asks the successor whether the lock is still its own,
// then has it unlock; the answer must be "false true" (not lost, mine) and
// the unlock ok: the holder's late calls left the successor's lock alone.
func checkSuccessor(t *testing.T, w *hostProc) procLine {
	t.Helper()
	w.send("check")
	chk, ok := w.wait("check", false, 30*time.Second)
	if !ok || lineRest(chk) != "false true" {
		t.Errorf("the successor's lock after the holder's late calls: %q (want not lost, still its own)", chk.text)
	}
	w.send("unlock")
	if u, ok := w.wait("unlock ", false, 30*time.Second); !ok || lineRest(u) != "ok" {
		t.Errorf("the successor's Unlock: %q", u.text)
	}
	return chk
}

// buildDlock builds ./cmd/dlock into dir.
func buildDlock(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "dlock")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/dlock").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dlock: %v: %s", err, out)
	}
	return bin
}

// commandRecords reads a COMMAND's records: the CLOCK_MONOTONIC of the
// first record of each kind.
func commandRecords(file string) map[string]int64 {
	recs := map[string]int64{}
	b, _ := os.ReadFile(file)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if n, err := strconv.ParseInt(f[1], 10, 64); err == nil && recs[f[0]] == 0 {
			recs[f[0]] = n
		}
	}
	return recs
}

// waitRecord polls a COMMAND's records until one of kind is there.
func waitRecord(file, kind string, d time.Duration) int64 {
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) { // poll the record file
		if at := commandRecords(file)[kind]; at != 0 || time.Now().After(deadline) {
			return at
		}
	}
}

// flockFreed takes the flock of file once every process that holds it is
// dead, and sends the CLOCK_MONOTONIC of that moment.
func flockFreed(t *testing.T, file string) <-chan int64 {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c := make(chan int64, 1)
	go func() {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err == nil {
			c <- monoNow()
		}
	}()
	return c
}

// The fault cases under the CLI: `dlock run` on host A runs a COMMAND that
// takes an flock on a local file and records its start; the successor,
// `dlock run` on host B, runs one that records its start. told is when
// the holder's COMMAND (with its children) was dead (its flock free),
// acquired when the successor's COMMAND started. Pass: dead first (the
// MARGIN, printed beside, is what dlock run had to stop COMMAND in).
func TestHostsFaultsCLI(t *testing.T) {
	r := needHostsRig(t)
	timeout := hostsTimeout(t)
	margin := marginOf(t, WithTimeout(timeout))
	bin := buildDlock(t, t.TempDir())
	eachFault(t, r, func(t *testing.T, f hostFault) {
		dA, dB := r.dirs(t)
		local := t.TempDir()
		recA, recB := filepath.Join(local, "a.rec"), filepath.Join(local, "b.rec")
		flockA, flockB := filepath.Join(local, "a.flock"), filepath.Join(local, "b.flock")
		runArgs := func(path string) []string {
			return []string{bin, "run", "-v", "-stale-after", timeout.String(), "-poll", "100ms", path, "--", os.Args[0], "-test.run=^$"}
		}
		// The holder's job: COMMAND and a child of its (unless
		// DLOCK_HOSTS_CMD_CHILD=0); the successor's: COMMAND alone, which
		// ends when its stdin does.
		withChild := "DLOCK_HOSTS_CMD_CHILD=1"
		if os.Getenv("DLOCK_HOSTS_CMD_CHILD") == "0" {
			withChild = "DLOCK_HOSTS_CMD_CHILD=0"
		}
		holder := startOnHost(t, r.a.aHost, []string{"DLOCK_TEST_CHILD=command", "DLOCK_HOSTS_REC=" + recA, "DLOCK_HOSTS_FLOCK=" + flockA, withChild},
			runArgs(filepath.Join(dA, "lock"))...)
		if waitRecord(recA, "start", 30*time.Second) == 0 {
			t.Fatalf("the holder's COMMAND on host A never started: %s", holder.stderrText())
		}
		dead := flockFreed(t, flockA)
		waiter := startOnHost(t, r.b.aHost, []string{"DLOCK_TEST_CHILD=command", "DLOCK_HOSTS_REC=" + recB, "DLOCK_HOSTS_FLOCK=" + flockB, "DLOCK_HOSTS_CMD_CHILD=0"},
			runArgs(filepath.Join(dB, "lock"))...)
		if _, ok := waiter.wait("", true, 30*time.Second); !ok { // -v: its first log line is "locking"
			t.Fatalf("dlock run on host B said nothing: %v", waiter.exitErr)
		}
		acquired := func(d time.Duration) bool { return waitRecord(recB, "start", d) != 0 }
		tl := runFault(t, r, f, timeout, holder.inner(t), acquired, func() { holder.stdin.Close() })
		if !acquired(5 * time.Second) {
			holder.stdin.Close() // not told: COMMAND ends, dlock run releases
		}
		tl.acquired = waitRecord(recB, "start", 30*time.Second)
		select {
		case tl.told = <-dead:
		case <-time.After(30 * time.Second):
		}
		if recs := commandRecords(recA); recs["end"] != 0 {
			// COMMAND ended on its own (stdin closed): not a loss, unless
			// dlock run says it was lost.
			tl.released = recs["end"]
			if <-waitDone(holder, 30*time.Second) == 76 {
				tl.released = 0
			} else {
				tl.told = 0
			}
		}
		tl.print(t, "cli", f.name, 0, runMargin(holder, margin)) // the job dead before the successor's COMMAND starts
		waiter.stdin.Close()
		code := <-waitDone(holder, 30*time.Second)
		wcode := <-waitDone(waiter, 30*time.Second)
		lost, _ := holder.wait("dlock: lost the lock", true, 0)
		figure(t, "     %-18s holder's dlock run: exit %d, said lost at %s; successor's: exit %d", "", code, since(tl.fault, lost.read), wcode)
		if wcode != 0 {
			recs := commandRecords(recB)
			job := func(p *hostProc) string { // how dlock run -v described the job
				for _, f := range strings.Split(p.stderrText(), "\n") {
					if _, after, ok := strings.Cut(f, `msg="dlock run: started command" `); ok {
						return after
					}
				}
				return "(not logged)"
			}
			t.Errorf("the successor's dlock run exited %d (its COMMAND: started %s, ended %s, SIGTERMed %s: anything else is a kill from outside)\n\tholder's job: %s\n\tsuccessor's job: %s\nthe successor's log:\n%s",
				wcode, since(tl.fault, recs["start"]), since(tl.fault, recs["end"]), since(tl.fault, recs["term"]), job(holder), job(waiter), waiter.stderrText())
		}
	})
}

// runMargin is the MARGIN dlock run -v says it gave its lock (it sizes its
// own to fit -grace), or def.
func runMargin(p *hostProc, def time.Duration) time.Duration {
	for _, f := range strings.Fields(p.stderrText()) {
		if v, ok := strings.CutPrefix(f, "margin="); ok {
			if d, err := time.ParseDuration(v); err == nil {
				return d
			}
		}
	}
	return def
}

// waitDone sends p's exit status once it has exited (-1 if it did not
// within d).
func waitDone(p *hostProc, d time.Duration) <-chan int {
	c := make(chan int, 1)
	select {
	case <-p.done:
		c <- p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		c <- -1
	}
	return c
}
