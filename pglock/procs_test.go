package pglock_test

// Tests with processes: helper processes re-executed from this test binary
// (TestMain runs the role named in the environment), each with its own
// connection pool, standing for hosts of their own.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/pglock"
)

const envRole = "PGLOCK_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runRole(role))
	}
	code := m.Run()
	removeDlockRunBuild()
	os.Exit(code)
}

func envDur(k string, def time.Duration) time.Duration {
	if v := os.Getenv(k); v != "" {
		d, err := time.ParseDuration(v)
		if err == nil {
			return d
		}
	}
	return def
}

// ev prints one event line for the parent, which stamps it on arrival.
func ev(format string, args ...any) {
	fmt.Printf("EV "+format+"\n", args...)
}

func rolePool(app string) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(os.Getenv("R_URL"))
	if err != nil {
		panic(err)
	}
	cfg.MaxConns = 3
	// the tests' own statements go through PgBouncer 1.18 in transaction
	// pooling too: no named prepared statements (pglock's own ask for this
	// mode whatever the pool's default)
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	return p
}

func runRole(role string) int {
	switch role {
	case "counter":
		return roleCounter()
	case "holder", "waiter":
		return roleHolder(role)
	case "rowholder":
		return roleRowHolder()
	case "chaos":
		return roleChaos()
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// roleCounter counts R_ROUNDS times under the lock: a marker file made
// exclusively while inside (one already there is an overlap), a counter
// file read and written back plus one.
func roleCounter() int {
	p := rolePool("pglock-counter")
	defer p.Close()
	l, err := pglock.New(p, os.Getenv("R_NAME"), pglock.WithTimeout(5*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir := os.Getenv("R_DIR")
	rounds, _ := strconv.Atoi(os.Getenv("R_ROUNDS"))
	overlaps := 0
	for range rounds {
		err := l.Do(context.Background(), func(ctx context.Context) error {
			marker := filepath.Join(dir, "inside")
			f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				overlaps++
			} else {
				f.Close()
			}
			b, err := os.ReadFile(filepath.Join(dir, "count"))
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			time.Sleep(500 * time.Microsecond)
			if err := os.WriteFile(filepath.Join(dir, "count"), []byte(strconv.Itoa(n+1)), 0o644); err != nil {
				return err
			}
			return os.Remove(marker)
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "counter:", err)
			return 1
		}
	}
	host, _ := os.Hostname()
	ev("overlaps %d", overlaps)
	ev("whoami pid %d host %s", os.Getpid(), host)
	return 0
}

// roleHolder takes the lock (a "holder" at once, a "waiter" when it comes
// free), holds it for R_HOLD unless told it is lost, and releases it,
// printing each step.
func roleHolder(role string) int {
	p := rolePool("pglock-" + role)
	defer p.Close()
	l, err := pglock.New(p, os.Getenv("R_NAME"),
		pglock.WithTimeout(envDur("R_TIMEOUT", 2*time.Second)),
		pglock.WithMargin(envDur("R_MARGIN", 400*time.Millisecond)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Lock(ctx); err != nil {
		ev("error %v", err)
		return 1
	}
	ev("acquired %d", l.Fence())
	select {
	case <-l.Lost():
		ev("told")
	case <-time.After(envDur("R_HOLD", time.Second)):
	}
	ev("unlocking")
	err = l.Unlock()
	ev("unlocked lost=%v err=%v", errors.Is(err, dlock.ErrLost), err)
	return 0
}

// roleRowHolder takes a lock row without a lease, the way Liquibase's
// DATABASECHANGELOGLOCK works (UPDATE ... SET locked = true WHERE NOT
// locked), and holds it until killed.
func roleRowHolder() int {
	p := rolePool("rowlock-holder")
	defer p.Close()
	tag, err := p.Exec(context.Background(), `UPDATE pglock_test_changeloglock SET locked = true, lockedby = $1 WHERE id = 1 AND NOT locked`, fmt.Sprint(os.Getpid()))
	if err != nil || tag.RowsAffected() != 1 {
		ev("error %v %v", err, tag)
		return 1
	}
	ev("acquired 0")
	time.Sleep(time.Hour)
	return 0
}

// proc is a helper process whose event lines are stamped on arrival by
// the test's clock.
type proc struct {
	name string
	cmd  *exec.Cmd
	t0   time.Time
	mu   sync.Mutex
	evs  []event
	got  chan event
	done chan struct{}
}

type event struct {
	at   time.Duration // since the test's t0
	kind string
	rest string
}

func startProc(t *testing.T, t0 time.Time, name, role string, env ...string) *proc {
	t.Helper()
	return startProcIn(t, t0, nil, name, role, env...)
}

// startProcIn is startProc with the command prefixed by wrap (e.g. ip netns
// exec NS, which execs: the process's pid is the helper's).
func startProcIn(t *testing.T, t0 time.Time, wrap []string, name, role string, env ...string) *proc {
	t.Helper()
	argv := append(append([]string{}, wrap...), os.Args[0], "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), append([]string{envRole + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, t0: t0, got: make(chan event, 100), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			at := time.Since(t0)
			if !strings.HasPrefix(line, "EV ") {
				continue
			}
			kind, rest, _ := strings.Cut(strings.TrimPrefix(line, "EV "), " ")
			e := event{at, kind, rest}
			p.mu.Lock()
			p.evs = append(p.evs, e)
			p.mu.Unlock()
			p.got <- e
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return p
}

// waitEvent waits for the process's next event of kind.
func (p *proc) waitEvent(t *testing.T, kind string, d time.Duration) event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e := <-p.got:
			if e.kind == "error" {
				t.Fatalf("%s: %s", p.name, e.rest)
			}
			if e.kind == kind {
				return e
			}
		case <-p.done:
			t.Fatalf("%s ended before %q", p.name, kind)
		case <-timer.C:
			t.Fatalf("%s: no %q within %v", p.name, kind, d)
		}
	}
}

func (p *proc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s did not end within %v", p.name, d)
	}
	p.cmd.Wait()
}

func (p *proc) first(kind string) (event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.evs {
		if e.kind == kind {
			return e, true
		}
	}
	return event{}, false
}

// TestCounterHosts: processes with pools of their own ("hosts"), straight
// and through PgBouncer at once, count under one lock: exact, no overlap.
func TestCounterHosts(t *testing.T) {
	tgs := targets(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "count"), []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := lockName(t)
	const perTarget, rounds = 3, 30
	t0 := time.Now()
	// As root, each process is a "host" of its own as containers are: its
	// own pid and UTS namespaces (pid 1 on host hN), as well as its own pool.
	_, err := exec.LookPath("unshare")
	hosts := os.Geteuid() == 0 && err == nil
	var ps []*proc
	for _, tg := range tgs {
		for i := range perTarget {
			pname := fmt.Sprintf("%s-%d", tg.name, i)
			var wrap []string
			if hosts {
				wrap = []string{"unshare", "--pid", "--fork", "--uts", "--kill-child", "sh", "-c", `hostname "$0" && exec "$@"`, "h-" + pname}
			}
			ps = append(ps, startProcIn(t, t0, wrap, pname, "counter",
				"R_URL="+tg.url, "R_NAME="+name, "R_DIR="+dir, "R_ROUNDS="+strconv.Itoa(rounds)))
		}
	}
	overlaps := 0
	for _, p := range ps {
		p.wait(t, 2*time.Minute)
		if p.cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("%s failed", p.name)
		}
		e, ok := p.first("overlaps")
		if !ok {
			t.Fatalf("%s reported nothing", p.name)
		}
		n, _ := strconv.Atoi(e.rest)
		overlaps += n
	}
	var who []string
	for _, p := range ps {
		if e, ok := p.first("whoami"); ok {
			who = append(who, e.rest)
		}
	}
	t.Logf("the processes: %s (own pid and UTS namespaces: %v)", strings.Join(who, "; "), hosts)
	b, _ := os.ReadFile(filepath.Join(dir, "count"))
	want := len(ps) * rounds
	t.Logf("%d processes (%d straight to the server, %d through PgBouncer) x %d rounds: count %s of %d, %d overlaps, %v",
		len(ps), perTarget, perTarget, rounds, b, want, overlaps, time.Since(t0).Round(time.Millisecond))
	if string(b) != strconv.Itoa(want) || overlaps != 0 {
		t.Fatalf("count %s of %d, %d overlaps", b, want, overlaps)
	}
}

// fault is one row of the fault table.
type fault struct {
	name            string
	holderVia       string // "direct" or "pgbouncer"
	timeout, margin time.Duration
	hold            time.Duration // how long the holder means to hold
	apply           func(t *testing.T, h *proc) (start, end time.Duration)
	holderKeeps     bool // the fault must not cost the holder its lock
	holderStopped   bool // the holder cannot be told before it runs again
	stoppedFor      time.Duration
}

// TestFaults: a holder, a waiter straight to the server, and a fault.
// Each prints, on the test's clock, who acquired when and who was told
// when. Pass: never two holders; a holder told it lost the lock is told
// MARGIN before the waiter acquires (a stopped holder: told as soon as it
// runs again, its late Unlock ErrLost, the successor's row intact).
func TestFaults(t *testing.T) {
	tgs := targets(t)
	direct, bouncer := tgs[0].url, tgs[1].url
	admin := adminConn(t)
	state := os.Getenv("PGLOCK_TEST_STATE")
	const T, M = 2 * time.Second, 400 * time.Millisecond
	faults := []fault{
		{name: "backend killed (pg_terminate_backend, 6 times)", holderVia: "pgbouncer", timeout: T, margin: M, hold: 3 * time.Second, holderKeeps: true,
			apply: func(t *testing.T, h *proc) (time.Duration, time.Duration) {
				s := time.Since(h.t0)
				killed := 0
				for range 6 {
					killed += terminate(t, direct, "pglock-holder")
					time.Sleep(300 * time.Millisecond)
				}
				t.Logf("%d of the holder's backends killed", killed)
				if killed == 0 {
					t.Error("no backend of the holder's was found to kill")
				}
				return s, time.Since(h.t0)
			}},
		{name: "backend killed, straight to the server", holderVia: "direct", timeout: T, margin: M, hold: 3 * time.Second, holderKeeps: true,
			apply: func(t *testing.T, h *proc) (time.Duration, time.Duration) {
				s := time.Since(h.t0)
				killed := 0
				for range 6 {
					killed += terminate(t, direct, "pglock-holder")
					time.Sleep(300 * time.Millisecond)
				}
				t.Logf("%d of the holder's backends killed", killed)
				if killed == 0 {
					t.Error("no backend of the holder's was found to kill")
				}
				return s, time.Since(h.t0)
			}},
		{name: "holder SIGSTOPped 2xTIMEOUT, then continued", holderVia: "direct", timeout: T, margin: M, hold: 10 * time.Second, holderStopped: true, stoppedFor: 2 * T,
			apply: func(t *testing.T, h *proc) (time.Duration, time.Duration) {
				s := time.Since(h.t0)
				h.cmd.Process.Signal(syscall.SIGSTOP)
				time.Sleep(2 * T)
				e := time.Since(h.t0)
				h.cmd.Process.Signal(syscall.SIGCONT)
				return s, e
			}},
		{name: "PgBouncer PAUSE 2xTIMEOUT, RESUME", holderVia: "pgbouncer", timeout: T, margin: M, hold: 10 * time.Second,
			apply: func(t *testing.T, h *proc) (time.Duration, time.Duration) {
				s := time.Since(h.t0)
				pause(t, admin)
				time.Sleep(2 * T)
				e := time.Since(h.t0)
				resume(t, admin)
				return s, e
			}},
		{name: "PgBouncer frozen 2xTIMEOUT (SIGSTOP: connections hang)", holderVia: "pgbouncer", timeout: T, margin: M, hold: 10 * time.Second,
			apply: func(t *testing.T, h *proc) (time.Duration, time.Duration) {
				pid := bouncerPID(t)
				s := time.Since(h.t0)
				syscall.Kill(pid, syscall.SIGSTOP)
				time.Sleep(2 * T)
				e := time.Since(h.t0)
				syscall.Kill(pid, syscall.SIGCONT)
				return s, e
			}},
		{name: "PostgreSQL restarted (pg_ctl restart -m fast), TIMEOUT 5s", holderVia: "direct", timeout: 5 * time.Second, margin: time.Second, hold: 6 * time.Second, holderKeeps: true,
			apply: func(t *testing.T, h *proc) (time.Duration, time.Duration) {
				if state == "" {
					t.Skip("PGLOCK_TEST_STATE is not set: cannot restart the server")
				}
				s := time.Since(h.t0)
				out, err := exec.Command("bash", "../scripts/postgres.sh", "restart", state).CombinedOutput()
				if err != nil {
					t.Fatalf("restart: %v: %s", err, out)
				}
				return s, time.Since(h.t0)
			}},
	}
	urls := map[string]string{"direct": direct, "pgbouncer": bouncer}
	if h, err := newNetHost(t, direct); err != nil {
		t.Logf("no namespaced host for the network cut (%v): that row is skipped", err)
	} else {
		urls["netns"], urls["netns-name"] = h.url, h.ns
		faults = append(faults, fault{name: "network cut 2xTIMEOUT (the holder's host's veth down)", holderVia: "netns", timeout: T, margin: M, hold: 10 * time.Second,
			apply: func(t *testing.T, p *proc) (time.Duration, time.Duration) {
				s := time.Since(p.t0)
				h.link(t, false)
				time.Sleep(2 * T)
				e := time.Since(p.t0)
				h.link(t, true)
				return s, e
			}})
	}
	var table []string
	for _, f := range faults {
		ok := t.Run(strings.Fields(f.name)[0]+"_"+f.holderVia, func(t *testing.T) {
			table = append(table, runFault(t, f, urls))
		})
		if !ok {
			table = append(table, f.name+": FAILED")
		}
	}
	t.Logf("fault table (times on the test's clock since the holder started; M = MARGIN):\n%s", strings.Join(table, "\n"))
}

func runFault(t *testing.T, f fault, urls map[string]string) string {
	name := lockName(t)
	t0 := time.Now()
	env := []string{"R_NAME=" + name, "R_TIMEOUT=" + f.timeout.String(), "R_MARGIN=" + f.margin.String()}
	var wrap []string
	if f.holderVia == "netns" {
		wrap = []string{"ip", "netns", "exec", urls["netns-name"]}
	}
	h := startProcIn(t, t0, wrap, "holder", "holder", append(env, "R_URL="+urls[f.holderVia], "R_HOLD="+f.hold.String())...)
	hAcq := h.waitEvent(t, "acquired", 20*time.Second)
	w := startProc(t, t0, "waiter", "waiter", append(env, "R_URL="+urls["direct"], "R_HOLD=3s")...)
	time.Sleep(300 * time.Millisecond) // the waiter is waiting (it makes no difference to the outcome)
	fs, fe := f.apply(t, h)
	h.wait(t, 30*time.Second)
	w.wait(t, 30*time.Second)
	told, wasTold := h.first("told")
	hUnlocking, _ := h.first("unlocking")
	hUnlocked, _ := h.first("unlocked")
	wAcq, ok := w.first("acquired")
	if !ok {
		t.Fatal("the waiter never acquired")
	}
	wUnlocked, _ := w.first("unlocked")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
	row := fmt.Sprintf("%-62s | holder via %-9s | holder acquired %s | fault %s-%s | ", f.name, f.holderVia, ms(hAcq.at), ms(fs), ms(fe))
	if wasTold {
		row += fmt.Sprintf("holder told %s | ", ms(told.at))
	} else {
		row += fmt.Sprintf("holder not told, released at %s | ", ms(hUnlocking.at))
	}
	row += fmt.Sprintf("waiter acquired %s", ms(wAcq.at))
	t.Logf("%s\n  holder: %s; waiter: %s", row, hUnlocked.rest, wUnlocked.rest)
	hLost := strings.HasPrefix(hUnlocked.rest, "lost=true")
	switch {
	case f.holderStopped:
		// acquired while the holder was stopped, not before its lease ran out
		if wAcq.at < fs+f.timeout-f.timeout/3-50*time.Millisecond {
			t.Errorf("waiter acquired %v after the stop: before the holder's lease (TIMEOUT %v, refreshed every %v) could expire", wAcq.at-fs, f.timeout, f.timeout/3)
		}
		if !wasTold || told.at < fe || told.at > fe+500*time.Millisecond {
			t.Errorf("the stopped holder was not told within 500ms of running again (told %v at %v, continued at %v)", wasTold, told.at, fe)
		}
		if !hLost {
			t.Errorf("the stopped holder's late Unlock: %s, want ErrLost", hUnlocked.rest)
		}
		if !strings.HasPrefix(wUnlocked.rest, "lost=false err=<nil>") {
			t.Errorf("the successor's row was touched: its Unlock says %s", wUnlocked.rest)
		}
		row += fmt.Sprintf(" | told %s after it ran again; its Unlock ErrLost; successor released cleanly", ms(told.at-fe))
	case wasTold:
		gap := wAcq.at - told.at
		row += fmt.Sprintf(" | told %s before the successor (M %s)", ms(gap), ms(f.margin))
		if gap < f.margin-100*time.Millisecond { // 100ms: the two printing processes' and the timer's delays
			t.Errorf("holder told only %v before the successor acquired (MARGIN %v)", gap, f.margin)
		}
		if !hLost {
			t.Errorf("holder's Unlock after being told: %s, want ErrLost", hUnlocked.rest)
		}
	default:
		if wAcq.at < hUnlocking.at {
			t.Errorf("TWO HOLDERS: the waiter acquired at %v, the holder released at %v untold", wAcq.at, hUnlocking.at)
		}
		if hLost {
			t.Errorf("holder not told but its Unlock says %s", hUnlocked.rest)
		}
		row += " | kept the lock through the fault, then handed over"
	}
	if f.holderKeeps && wasTold {
		t.Errorf("the holder lost its lock to a fault it should ride out")
	}
	return row
}

// terminate kills every server backend whose application_name is app,
// and says how many there were.
func terminate(t *testing.T, url, app string) int {
	t.Helper()
	c := newPool(t, url, 1)
	defer c.Close()
	var n int
	err := c.QueryRow(ctxT(t, 5*time.Second), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
	if err != nil {
		t.Fatal("pg_terminate_backend:", err)
	}
	return n
}

func bouncerPID(t *testing.T) int {
	t.Helper()
	f := os.Getenv("PGLOCK_TEST_BOUNCER_PIDFILE")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Skip("PgBouncer's pid file is not known (PGLOCK_TEST_BOUNCER_PIDFILE)")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// netHost is a "host" of its own on the network: a network namespace
// joined to this one by a veth pair, from which the server is reached
// through a TCP relay on this side's address. Setting the veth down cuts
// it off: packets are dropped, connections hang without an error.
type netHost struct {
	ns, dev string
	url     string
}

func newNetHost(t *testing.T, serverURL string) (*netHost, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, err
	}
	id := os.Getpid() % 100000
	h := &netHost{ns: fmt.Sprintf("pglock-h%d", id), dev: fmt.Sprintf("pglh%d", id)}
	peer := fmt.Sprintf("pgln%d", id)
	// 10.254.55.0/30: pglock's tests' own
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	exec.Command("ip", "netns", "del", h.ns).Run() // a leftover of a killed run
	exec.Command("ip", "link", "del", h.dev).Run()
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", h.dev).Run()
		exec.Command("ip", "netns", "del", h.ns).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", h.ns},
		{"link", "add", h.dev, "type", "veth", "peer", "name", peer, "netns", h.ns},
		{"addr", "add", "10.254.55.1/30", "dev", h.dev},
		{"link", "set", h.dev, "up"},
		{"-n", h.ns, "addr", "add", "10.254.55.2/30", "dev", peer},
		{"-n", h.ns, "link", "set", peer, "up"},
		{"-n", h.ns, "link", "set", "lo", "up"},
	} {
		if err := run(args...); err != nil {
			return nil, err
		}
	}
	u, err := neturl.Parse(serverURL)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "10.254.55.1:0")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { ln.Close() })
	go relay(ln, u.Host)
	u.Host = ln.Addr().String()
	h.url = u.String()
	return h, nil
}

// relay copies every connection accepted on ln to and from target.
func relay(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			s, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer s.Close()
			go func() { io.Copy(s, c); s.Close() }()
			io.Copy(c, s)
		}()
	}
}

// link sets this side of the host's veth up or down.
func (h *netHost) link(t *testing.T, up bool) {
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "link", "set", h.dev, state).CombinedOutput(); err != nil {
		t.Errorf("ip link set %s %s: %v: %s", h.dev, state, err, out)
	}
}
