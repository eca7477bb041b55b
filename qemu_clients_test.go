//go:build linux

package dlock

// Two real NFS clients: two qemu guests (scripts/qemu-nfs.sh), each its own
// Linux NFSv4 client of the host's nfs-ganesha, each running an agent that
// takes commands from the test over TCP (in a guest, 10.0.N.2 is this
// host's 127.0.0.1) and answers with lines this host stamps as they
// arrive: every time below is this host's clock. One boot of the two
// guests serves every case of a test.
//
// A guest may mount the export several times with options of its own
// (DLOCK_NFS_MOUNTS, each mount with its own superblock and caches), so
// that one boot measures each mount variant of issue 21's table.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
)

// --- the guest side ----------------------------------------------------

// guestAgent connects to DLOCK_CTL and carries out its commands, one line
// each, "ID VERB ARGS...", answering "ID EVENT ..." (see agentCommand).
func guestAgent() int {
	ctl := os.Getenv("DLOCK_CTL")
	var c net.Conn
	var err error
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if c, err = net.DialTimeout("tcp", ctl, 5*time.Second); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		guestSay("error connecting to %s: %v", ctl, err)
		return 1
	}
	a := &agent{conn: c, locks: map[string]*Lock{}}
	host, _ := os.Hostname()
	a.say("- hello %s", host)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		go a.command(f[0], f[1], f[2:])
	}
	guestSay("agent: control connection closed: %v", sc.Err())
	return 0
}

type agent struct {
	mu    sync.Mutex // serialises writes to conn, and guards locks
	conn  net.Conn
	locks map[string]*Lock
}

func (a *agent) say(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.conn, format+"\n", args...)
}

// command carries out one command:
//
//	ID lock PATH [POLL [HINTADDR]]
//	                      -> ID waiting, then ID acquired fence=F lostAlready=B (or ID error ...)
//	ID unlock LOCKID      -> ID released err=...
//	ID clock UNIXNANO     -> ID clock set (the guest's clock set to the host's)
//	ID stats MOUNT        -> ID stats total=N op=N... (the mount's NFS RPCs, /proc/self/mountstats)
//	ID uncontended DIR N  -> ID uncontended ... (guestUncontended)
//	ID flock PATH         -> ID flock got|busy|error=... (flock(2) LOCK_EX|LOCK_NB, kept under ID)
//	ID funlock FLOCKID    -> ID funlock closed|error=...
//	ID workers N ROUNDS HOLD TIMEOUT PATH COUNTER
//	                      -> ID wK ... (each worker's lines), then ID workers-done failed=N
func (a *agent) command(id, verb string, args []string) {
	switch verb {
	case "lock":
		// dlock's warnings come back as "ID warn ...": none is expected
		// here (a skew warning between guests whose clocks agree is false).
		opts := []Option{WithLogger(slog.New(slog.NewTextHandler(agentLog{a, id}, &slog.HandlerOptions{Level: slog.LevelWarn})))}
		if len(args) > 1 {
			if d, err := time.ParseDuration(args[1]); err == nil {
				opts = append(opts, WithPollInterval(d))
			}
		}
		if len(args) > 2 { // qemu_hint_test.go
			opts = append(opts, WithWakeHints(strings.TrimPrefix(args[2], "auto")))
		}
		l, err := New(args[0], opts...)
		if err != nil {
			a.say("%s error %v", id, err)
			return
		}
		a.say("%s waiting", id)
		if err := l.Lock(context.Background()); err != nil {
			a.say("%s error %v", id, err)
			return
		}
		lostAlready := false
		select {
		case <-l.Lost():
			lostAlready = true
		default:
		}
		a.mu.Lock()
		a.locks[id] = l
		a.mu.Unlock()
		a.say("%s acquired fence=%d lostAlready=%v", id, l.Fence(), lostAlready)
	case "unlock":
		a.mu.Lock()
		l := a.locks[args[0]]
		delete(a.locks, args[0])
		a.mu.Unlock()
		if l == nil {
			a.say("%s error no lock %s", id, args[0])
			return
		}
		a.say("%s released err=%v", id, errText(l.Unlock()))
	case "clock":
		// The host's clock, sent right after the hello: a guest's clock
		// comes from its RTC at boot, up to a second or more off the
		// host's, and a holder on the host (the server's directory) is
		// then rightly told as "far off" by a waiter here.
		ns, err := strconv.ParseInt(args[0], 10, 64)
		if err == nil {
			tv := syscall.NsecToTimeval(ns)
			err = syscall.Settimeofday(&tv)
		}
		if err != nil {
			a.say("%s error clock: %v", id, err)
			return
		}
		a.say("%s clock set", id)
	case "stats":
		a.say("%s stats %s", id, nfsMountStats(args[0]))
	case "workers":
		a.workers(id, args)
	case "uncontended":
		a.say("%s uncontended %s", id, guestUncontended(args))
	case "flock", "funlock": // qemu_flock_test.go
		a.say("%s %s", id, guestFlock(id, verb, args))
	default:
		a.say("%s error unknown command %s", id, verb)
	}
}

// agentLog sends each line a logger writes as the answer "ID warn LINE".
type agentLog struct {
	a  *agent
	id string
}

func (w agentLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.a.say("%s warn %s", w.id, line)
	}
	return len(p), nil
}

// errText is err's message without spaces, or nil.
func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// nfsMountStats sums the per-op RPC counts of the NFS mount at mount in
// /proc/self/mountstats: "total=N" and "OP=N" for each op used, and the
// mount's options ("vers=...").
func nfsMountStats(mount string) string {
	b, err := os.ReadFile("/proc/self/mountstats")
	if err != nil {
		return "error=" + errText(err)
	}
	in, perOp := false, false
	total := 0
	var ops []string
	vers := ""
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "device ") {
			in = strings.Contains(line, " mounted on "+mount+" ")
			perOp = false
			continue
		}
		if !in {
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "opts:"):
			for _, o := range strings.Split(strings.TrimSpace(strings.TrimPrefix(t, "opts:")), ",") {
				if strings.HasPrefix(o, "vers=") {
					vers = o
				}
			}
		case t == "per-op statistics":
			perOp = true
		case perOp:
			name, rest, ok := strings.Cut(t, ":")
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				continue
			}
			if n, err := strconv.Atoi(f[0]); err == nil && n > 0 {
				total += n
				ops = append(ops, fmt.Sprintf("%s=%d", name, n))
			}
		}
	}
	return fmt.Sprintf("%s total=%d %s", vers, total, strings.Join(ops, " "))
}

// workers runs N worker processes (guestWorker), forwarding their lines.
func (a *agent) workers(id string, args []string) {
	if len(args) != 6 && len(args) != 7 {
		a.say("%s error workers wants N ROUNDS HOLD TIMEOUT PATH COUNTER [watch|poll|run]", id)
		return
	}
	watch := "watch"
	if len(args) == 7 {
		watch = args[6]
	}
	n, _ := strconv.Atoi(args[0])
	var wg sync.WaitGroup
	var failed sync.Map
	for k := range n {
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = append(os.Environ(), "DLOCK_TEST_CHILD=qemu-worker", "DLOCK_ROUNDS="+args[1], "DLOCK_HOLD="+args[2],
			"DLOCK_TIMEOUT="+args[3], "DLOCK_PATH="+args[4], "DLOCK_COUNTER="+args[5], "DLOCK_WATCH="+watch)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			a.say("%s error %v", id, err)
			failed.Store(k, true)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				a.say("%s w%d %s", id, k, sc.Text())
			}
			if err := cmd.Wait(); err != nil {
				failed.Store(k, true)
			}
		}()
	}
	wg.Wait()
	nf := 0
	failed.Range(func(any, any) bool { nf++; return true })
	a.say("%s workers-done failed=%d", id, nf)
}

// guestWorker takes the lock DLOCK_ROUNDS times. In each critical section
// it reads the counter (a file on the NFS mount: close-to-open makes what
// the last holder wrote visible), writes it plus one, and keeps the lock
// for DLOCK_HOLD. It says, per round: "acq I fence=F read=V wait=W
// lostAlready=B", then "rel I err=E lost=B" (lost: Lost() closed while it
// held). Times are the host's, as the lines arrive; wait is its own
// measure of how long Lock took.
func guestWorker() int {
	if os.Getenv("DLOCK_WATCH") == "run" {
		return guestRunWorker()
	}
	rounds, _ := strconv.Atoi(os.Getenv("DLOCK_ROUNDS"))
	hold, _ := time.ParseDuration(os.Getenv("DLOCK_HOLD"))
	timeout, _ := time.ParseDuration(os.Getenv("DLOCK_TIMEOUT"))
	path, counter := os.Getenv("DLOCK_PATH"), os.Getenv("DLOCK_COUNTER")
	bad := 0
	for i := range rounds {
		// dlock's warnings go to stdout, so to the host, which counts any
		// as a failure (a skew warning between guests whose clocks agree
		// is false; a reclaim or a loss here is wrong).
		l, err := New(path, WithTimeout(timeout), WithWatch(os.Getenv("DLOCK_WATCH") != "poll"),
			WithLogger(slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))))
		if err != nil {
			fmt.Printf("error %v\n", err)
			return 1
		}
		t0 := time.Now()
		if err := l.Lock(context.Background()); err != nil {
			fmt.Printf("error round %d: %s\n", i, errText(err))
			bad++
			continue
		}
		wait := time.Since(t0)
		lost := l.Lost()
		lostAlready := false
		select {
		case <-lost:
			lostAlready = true
		default:
		}
		b, err := os.ReadFile(counter)
		v, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || perr != nil {
			fmt.Printf("error reading the counter: %v %v\n", err, perr)
			bad++
			v = -1
		}
		fmt.Printf("acq %d fence=%d read=%d wait=%.3f lostAlready=%v\n", i, l.Fence(), v, wait.Seconds(), lostAlready)
		if v >= 0 {
			if err := os.WriteFile(counter, []byte(strconv.Itoa(v+1)), 0o644); err != nil {
				fmt.Printf("error writing the counter: %v\n", err)
				bad++
			}
			// A write that returns after the lock was lost may land
			// after a successor's read: only a fence can stop that.
			select {
			case <-lost:
				fmt.Printf("late-write %d fence=%d wrote=%d\n", i, l.Fence(), v+1)
			default:
			}
		}
		wasLost := false
		select {
		case <-lost:
			wasLost = true
		case <-time.After(hold):
		}
		err = l.Unlock()
		if !wasLost {
			select {
			case <-lost:
				wasLost = true
			default:
			}
		}
		fmt.Printf("rel %d err=%s lost=%v\n", i, errText(err), wasLost)
	}
	if bad > 0 {
		return 1
	}
	return 0
}

// --- the host side ------------------------------------------------------

// qemuAgent is a guest running guestAgent, and its control connection.
type qemuAgent struct {
	*qemuGuest
	ctl   *lineLog // the agent's answers, stamped here as they arrive
	conn  net.Conn
	mu    sync.Mutex
	nextN int
}

// ctlListener is where the guests' agents call this host.
type ctlListener struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[string]chan net.Conn // by guest name, from its hello
}

func listenCtl(t *testing.T) *ctlListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &ctlListener{ln: ln, conns: map[string]chan net.Conn{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				rd := bufio.NewReader(conn)
				hello, err := rd.ReadString('\n')
				f := strings.Fields(hello)
				if err != nil || len(f) != 3 || f[1] != "hello" {
					conn.Close()
					return
				}
				c.ch(f[2]) <- &bufConn{conn, rd}
			}()
		}
	}()
	return c
}

func (c *ctlListener) ch(name string) chan net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns[name] == nil {
		c.conns[name] = make(chan net.Conn, 1)
	}
	return c.conns[name]
}

// bufConn is a connection whose first line was read through rd.
type bufConn struct {
	net.Conn
	rd *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.rd.Read(p) }

// bootAgent boots a guest running the agent, with the export mounted once
// per entry of mounts (options, or "default" for none but the address),
// at /m1, /m2, ..., and waits for its agent to call. link, if set, is a
// second link's "QEMU-NETDEV ADDR/PREFIX" (qemu_hint_test.go).
func (r qemuRig) bootAgent(t *testing.T, c *ctlListener, name string, netN int, mounts []string, link ...string) *qemuAgent {
	t.Helper()
	port := c.ln.Addr().(*net.TCPAddr).Port
	env := []string{"DLOCK_QEMU_ROLE=qemu-agent", "DLOCK_TIMEOUT=10s",
		fmt.Sprintf("DLOCK_CTL=10.0.%d.2:%d", netN, port), "DLOCK_NFS_MOUNTS=" + strings.Join(mounts, "/")}
	var extra []string
	if len(link) == 2 {
		env = append(env, "DLOCK_GUEST_LINK_ADDR="+link[1])
		extra = []string{"-netdev", link[0], "-device", "virtio-net-pci,netdev=n1"}
	}
	g := r.boot(t, name, netN, env, extra...)
	a := &qemuAgent{qemuGuest: g, ctl: newLineLog(name + "-ctl")}
	select {
	case conn := <-c.ch(name):
		a.conn = conn
	case <-time.After(qemuBootWithin):
		t.Fatalf("%s: its agent never called (console in %s)", name, strings.TrimSuffix(g.mon, ".mon")+".console")
	}
	t.Cleanup(func() { a.conn.Close() })
	raw, err := os.Create(strings.TrimSuffix(g.mon, ".mon") + ".ctl")
	if err != nil {
		t.Fatal(err)
	}
	go func() { a.ctl.read(a.conn, raw); raw.Close() }()
	// One clock for the guests and the host, within the control link's
	// delay (a guest runs no NTP): a skew warning then means a fault.
	a.wait(t, a.send(t, "clock", time.Now().UnixNano()), "clock", 10*time.Second)
	return a
}

// send gives the agent a command and returns its ID.
func (a *qemuAgent) send(t *testing.T, verb string, args ...any) string {
	t.Helper()
	a.mu.Lock()
	a.nextN++
	id := fmt.Sprintf("c%d", a.nextN)
	a.mu.Unlock()
	parts := []string{id, verb}
	for _, x := range args {
		parts = append(parts, fmt.Sprint(x))
	}
	if _, err := fmt.Fprintln(a.conn, strings.Join(parts, " ")); err != nil {
		t.Fatalf("%s: sending %q: %v", a.who, parts, err)
	}
	return id
}

// wait waits for the answer "ID event" and returns it.
func (a *qemuAgent) wait(t *testing.T, id, event string, d time.Duration) stamped {
	t.Helper()
	l, ok := a.ctl.findAnswer(id, event, d)
	if !ok {
		if e, bad := a.ctl.findAnswer(id, "error", 0); bad {
			t.Fatalf("%s: %s %s: %s", a.who, id, event, e.text)
		}
		t.Fatalf("%s: no answer %q to %s within %v", a.who, event, id, d)
	}
	return l
}

// findAnswer is find for the agent's answers, which carry no marker.
func (g *lineLog) findAnswer(id, event string, d time.Duration) (stamped, bool) {
	want := id + " " + event
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		for _, l := range g.all {
			if l.text == want || strings.HasPrefix(l.text, want+" ") {
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

// answers returns every answer to id seen so far.
func (g *lineLog) answers(id string) []stamped {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []stamped
	for _, l := range g.all {
		if strings.HasPrefix(l.text, id+" ") {
			out = append(out, l)
		}
	}
	return out
}

// stats asks the agent for the RPC counts of its mount.
func (a *qemuAgent) stats(t *testing.T, mount string) (stamped, nfsStats) {
	t.Helper()
	l := a.wait(t, a.send(t, "stats", mount), "stats", 30*time.Second)
	return l, parseNFSStats(l.text)
}

// nfsStats is an agent's stats answer: the total RPCs and each op's.
type nfsStats struct {
	vers  string
	total int
	ops   map[string]int
}

func parseNFSStats(line string) nfsStats {
	s := nfsStats{ops: map[string]int{}}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(v)
		switch k {
		case "vers":
			s.vers = v
		case "total":
			s.total = n
		default:
			s.ops[k] = n
		}
	}
	return s
}

// sub is what was counted between b and s.
func (s nfsStats) sub(b nfsStats) nfsStats {
	d := nfsStats{vers: s.vers, total: s.total - b.total, ops: map[string]int{}}
	for k, v := range s.ops {
		if v-b.ops[k] != 0 {
			d.ops[k] = v - b.ops[k]
		}
	}
	return d
}

func (s nfsStats) add(o nfsStats) nfsStats {
	d := nfsStats{vers: s.vers, total: s.total + o.total, ops: map[string]int{}}
	for k, v := range s.ops {
		d.ops[k] += v
	}
	for k, v := range o.ops {
		d.ops[k] += v
	}
	if d.vers == "" {
		d.vers = o.vers
	}
	return d
}

// perSecond formats the counts per second of d, the biggest ops first.
func (s nfsStats) perSecond(d time.Duration) string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range s.ops {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v || kvs[i].v == kvs[j].v && kvs[i].k < kvs[j].k })
	var parts []string
	for _, x := range kvs {
		parts = append(parts, fmt.Sprintf("%s %.1f", x.k, float64(x.v)/d.Seconds()))
	}
	return fmt.Sprintf("%.1f RPCs/s (%s)", float64(s.total)/d.Seconds(), strings.Join(parts, ", "))
}

// entryWatch stamps every change of the lock's state entry at path, as
// listings of the exported directory on this host show it (every 5 ms).
type entryWatch struct {
	mu      sync.Mutex
	changes []entryChange
}

type entryChange struct {
	at   time.Time
	name string
	free bool
}

func watchEntry(ctx context.Context, path string) *entryWatch {
	w := &entryWatch{}
	go func() {
		last := ""
		for ctx.Err() == nil {
			if st, err := readState(path); err == nil && st.Entries == 1 && st.e.name != last {
				last = st.e.name
				w.mu.Lock()
				w.changes = append(w.changes, entryChange{time.Now(), last, st.e.free})
				w.mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// freedAfter returns when the entry first became free after at, waiting
// up to d for it.
func (w *entryWatch) freedAfter(at time.Time, d time.Duration) (time.Time, bool) {
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		for _, c := range w.changes {
			if c.free && !c.at.Before(at) {
				w.mu.Unlock()
				return c.at, true
			}
		}
		w.mu.Unlock()
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
	}
}

// firstChangeAfter returns the first change after at that is not a
// refresh of the holder of fence (a free entry, or another fence), waiting
// up to d for it.
func (w *entryWatch) firstChangeAfter(at time.Time, fence uint64, d time.Duration) (entryChange, bool) {
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		for _, c := range w.changes {
			if !c.at.Before(at) && (c.free || entryFence(c.name) != fence) {
				w.mu.Unlock()
				return c, true
			}
		}
		w.mu.Unlock()
		if time.Now().After(deadline) {
			return entryChange{}, false
		}
	}
}

func entryFence(name string) uint64 { return fromDir(lockdir.Parse(name)).fence }

// envInt is the integer in the environment variable name, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// qemuMountVariants are the mounts of issue 21's table (and actimeo=0), /m1 to /m6 in
// each guest of TestQemuNFSClients: each its own superblock and caches.
var qemuMountVariants = []struct{ name, opts string }{
	{"vers=4.1,nosharecache", "vers=4.1,nosharecache"},
	{"default options", "default"},
	{"actimeo=60", "vers=4.1,nosharecache,actimeo=60"},
	{"noac", "vers=4.1,nosharecache,noac"},
	{"lookupcache=none", "vers=4.1,nosharecache,lookupcache=none"},
	{"actimeo=0", "vers=4.1,nosharecache,actimeo=0"},
}

// Two real NFS clients, two qemu guests, each mounting the export once
// per mount variant. Three parts, each printing its figures on this
// host's clock:
//
//   - handoff: a holder in guest 1 (or on the server's exported
//     directory) holds about 1 s while a waiter with the default poll
//     waits in guest 2; each hand-off, from the release landing on the
//     server to the waiter's acquisition, must take at most the poll
//     interval plus 1 s, on every mount variant. Also prints the waiter's
//     NFS RPCs per waiting second (its mount's /proc/self/mountstats).
//   - alternation: DLOCK_QEMU_PROCS processes in each guest (default 2)
//     take the lock DLOCK_QEMU_ROUNDS times each, counting in a file on
//     NFS: the count exact, the writes chained by fence, and nobody waits
//     more than a few holds.
//   - server-restart: the same counting while nfs-ganesha is SIGKILLed and
//     restarted (DLOCK_QEMU_RESTARTS times): exact, no overlap, nobody
//     told a loss (TIMEOUT 20 s, far above the outage).
//
// DLOCK_QEMU_HANDOFF_ROUNDS (default 3) sets the hand-offs per variant,
// DLOCK_QEMU_HANDOFF_ONLY picks the variants whose names contain it;
// DLOCK_QEMU_PARTS (default the three) a comma-separated choice of the
// parts; "uncontended" (by hand only) adds dlock's uncontended cost in a
// guest against the mkdir+rmdir floor of each mount (qemuUncontended).
func TestQemuNFSClients(t *testing.T) {
	r := needQemu(t)
	c := listenCtl(t)
	var mounts []string
	for _, v := range qemuMountVariants {
		mounts = append(mounts, v.opts)
	}
	var a, b *qemuAgent
	var wg sync.WaitGroup
	wg.Add(2)
	booted := time.Now()
	go func() { defer wg.Done(); a = r.bootAgent(t, c, "g1", 2, mounts) }()
	go func() { defer wg.Done(); b = r.bootAgent(t, c, "g2", 3, mounts) }()
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}
	t.Logf("two guests up in %.1fs; mounts of g2: %s", time.Since(booted).Seconds(), mountLines(b.qemuGuest))
	parts := os.Getenv("DLOCK_QEMU_PARTS")
	want := func(p string) bool { return parts == "" || strings.Contains(","+parts+",", ","+p+",") }
	if want("handoff") {
		t.Run("handoff", func(t *testing.T) { qemuHandoff(t, r, a, b) })
	}
	if strings.Contains(","+parts+",", ",uncontended,") { // by hand only
		t.Run("uncontended", func(t *testing.T) { qemuUncontended(t, r, a) })
	}
	if want("alternation") {
		t.Run("alternation", func(t *testing.T) { qemuAlternation(t, r, a, b, 0) })
	}
	if want("server-restart") {
		t.Run("server-restart", func(t *testing.T) { qemuAlternation(t, r, a, b, envInt("DLOCK_QEMU_RESTARTS", 1)) })
	}
}

// mountLines is the guest's "mount" lines: each NFS mount's options.
func mountLines(g *qemuGuest) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, l := range g.all {
		if _, rest, ok := strings.Cut(l.text, qemuMarker+"mount "); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				var keep []string
				for _, o := range strings.Split(f[1], ",") {
					if strings.HasPrefix(o, "vers=") || strings.HasPrefix(o, "ac") || o == "noac" || strings.HasPrefix(o, "lookupcache") || o == "nosharecache" || strings.HasPrefix(o, "local_lock") {
						keep = append(keep, o)
					}
				}
				out = append(out, f[0]+" "+strings.Join(keep, ","))
			}
		}
	}
	return strings.Join(out, "; ")
}

func qemuHandoff(t *testing.T, r qemuRig, a, b *qemuAgent) {
	name, host := r.dir(t)
	rounds := envInt("DLOCK_QEMU_HANDOFF_ROUNDS", 3)
	type variant struct {
		name     string
		mount    int
		onServer bool
	}
	var vs []variant
	for i, v := range qemuMountVariants {
		vs = append(vs, variant{v.name, i + 1, false})
	}
	vs = append(vs, variant{"holder on the server's directory", 1, true})
	limit := DefaultPollInterval + time.Second
	var table []string
	only := os.Getenv("DLOCK_QEMU_HANDOFF_ONLY") // a variant's name contains it
	for vi, v := range vs {
		if only != "" && !strings.Contains(v.name, only) {
			continue
		}
		lockName := fmt.Sprintf("lock%d", vi)
		guestPath := fmt.Sprintf("/m%d/%s/%s", v.mount, name, lockName)
		hostPath := filepath.Join(host, lockName)
		mount := fmt.Sprintf("/m%d", v.mount)
		ctx, cancel := context.WithCancel(context.Background())
		w := watchEntry(ctx, hostPath)
		var hand []time.Duration
		var ops nfsStats
		var opsFor time.Duration
		for i := range rounds {
			// the holder
			var hid string
			var local *Lock
			var held stamped
			if v.onServer {
				local, _ = New(hostPath)
				if err := local.Lock(context.Background()); err != nil {
					t.Fatalf("%s: holder on the server: %v", v.name, err)
				}
				held = stamped{at: time.Now(), text: fmt.Sprintf("fence=%d", local.Fence())}
			} else {
				hid = a.send(t, "lock", guestPath)
				held = a.wait(t, hid, "acquired", 60*time.Second)
			}
			fence, _ := strconv.ParseUint(field(held.text, "fence"), 10, 64)
			// the waiter
			wid := b.send(t, "lock", guestPath)
			waiting := b.wait(t, wid, "waiting", 30*time.Second)
			time.Sleep(time.Until(waiting.at.Add(300 * time.Millisecond)))
			s1at, s1 := b.stats(t, mount)
			time.Sleep(time.Until(waiting.at.Add(time.Second)))
			s2at, s2 := b.stats(t, mount)
			ops = ops.add(s2.sub(s1))
			opsFor += s2at.at.Sub(s1at.at)
			// the release
			sent := time.Now()
			var released stamped
			if v.onServer {
				err := local.Unlock()
				released = stamped{at: time.Now(), text: "err=" + errText(err)}
			} else {
				released = a.wait(t, a.send(t, "unlock", hid), "released", 60*time.Second)
			}
			acq := b.wait(t, wid, "acquired", 120*time.Second)
			landing := released.at
			how := "the holder's Unlock returned"
			if c, ok := w.firstChangeAfter(sent, fence, 0); ok && c.at.Before(landing) {
				landing, how = c.at, "seen on the server"
				if !c.free {
					how = "the waiter's entry seen on the server"
				}
			}
			d := acq.at.Sub(landing)
			hand = append(hand, d)
			t.Logf("  %s, round %d: holder acquired %s; waiter waiting %s; release sent %s, landed %s (%s); waiter acquired %s (%s): hand-off %.3fs",
				v.name, i+1, rel(held.at, sent), rel(waiting.at, sent), rel(sent, sent), rel(landing, sent), how, rel(acq.at, sent),
				strings.TrimPrefix(acq.text, wid+" acquired "), d.Seconds())
			if d > limit {
				t.Errorf("%s, round %d: hand-off took %.3fs, more than the poll interval + 1 s (%v)", v.name, i+1, d.Seconds(), limit)
			}
			if field(acq.text, "lostAlready") == "true" {
				t.Errorf("%s, round %d: Lock returned a lock already lost", v.name, i+1)
			}
			if !strings.Contains(released.text, "err=nil") {
				t.Errorf("%s, round %d: the holder's Unlock: %s", v.name, i+1, released.text)
			}
			if rl := b.wait(t, b.send(t, "unlock", wid), "released", 60*time.Second); !strings.Contains(rl.text, "err=nil") {
				t.Errorf("%s, round %d: the waiter's Unlock: %s", v.name, i+1, rl.text)
			}
			warned := b.ctl.answers(wid + " warn")
			if hid != "" {
				warned = append(warned, a.ctl.answers(hid+" warn")...)
			}
			for _, w := range warned {
				t.Errorf("%s, round %d: dlock warned: %s", v.name, i+1, w.text)
			}
		}
		cancel()
		sort.Slice(hand, func(i, j int) bool { return hand[i] < hand[j] })
		var sum time.Duration
		for _, d := range hand {
			sum += d
		}
		row := fmt.Sprintf("| %s | %.3f s (%.3f–%.3f) | %s |", v.name, (sum / time.Duration(len(hand))).Seconds(),
			hand[0].Seconds(), hand[len(hand)-1].Seconds(), ops.perSecond(opsFor))
		table = append(table, row)
	}
	t.Logf("hand-off across two NFS clients, %d rounds per mount, holder holds ~1 s, waiter polls every %v (defaults); release landing on the server -> waiter acquired, mean (min–max); the waiter's mount's NFS RPCs per waiting second:", rounds, DefaultPollInterval)
	t.Logf("| mount | release → B acquired | B's NFS RPCs per waiting second |")
	t.Logf("|---|---|---|")
	for _, row := range table {
		t.Logf("%s", row)
	}
}

// workerEvent is one line of a worker: an acquisition or a release.
type workerEvent struct {
	at     time.Time
	who    string // guest/worker
	guest  string
	kind   string // acq, rel, error
	round  int
	fence  uint64
	read   int
	wait   float64
	lost   bool // rel: told the lock was lost; acq: lost already
	err    string
	detail string
}

func parseWorkerEvents(g *qemuAgent, id string) []workerEvent {
	var out []workerEvent
	for _, l := range g.ctl.answers(id) {
		f := strings.Fields(l.text)
		if len(f) < 3 || len(f[1]) < 2 || f[1][0] != 'w' || strings.Trim(f[1][1:], "0123456789") != "" {
			continue
		}
		e := workerEvent{at: l.at, who: g.who + "/" + f[1], guest: g.who, kind: f[2], detail: strings.Join(f[2:], " ")}
		if len(f) > 3 {
			e.round, _ = strconv.Atoi(f[3])
		}
		e.fence, _ = strconv.ParseUint(field(l.text, "fence"), 10, 64)
		e.read, _ = strconv.Atoi(field(l.text, "read"))
		e.wait, _ = strconv.ParseFloat(field(l.text, "wait"), 64)
		e.lost = field(l.text, "lost") == "true" || field(l.text, "lostAlready") == "true"
		e.err = field(l.text, "err")
		out = append(out, e)
	}
	return out
}

// qemuAlternation runs the counting workers in both guests; with
// restarts > 0, nfs-ganesha is SIGKILLed and restarted that many times
// while they count.
func qemuAlternation(t *testing.T, r qemuRig, a, b *qemuAgent, restarts int) {
	name, host := r.dir(t)
	procs := envInt("DLOCK_QEMU_PROCS", 2)
	rounds := envInt("DLOCK_QEMU_ROUNDS", 10)
	hold := 200 * time.Millisecond
	timeout := 10 * time.Second
	what := "alternation"
	// DLOCK_QEMU_RESTART_GRACE=N: ganesha comes back with a grace period
	// of N seconds (renames wait it out, as in issue 21's item 2); a
	// holder whose refresh waits past its deadline must be told it lost
	// the lock, and Lock must never return a lock already lost.
	grace := time.Duration(envInt("DLOCK_QEMU_RESTART_GRACE", 0)) * time.Second
	if restarts > 0 {
		rounds = envInt("DLOCK_QEMU_RESTART_ROUNDS", 25)
		hold = 100 * time.Millisecond
		timeout = 20 * time.Second
		what = "server restart"
	}
	if err := os.WriteFile(filepath.Join(host, "counter"), []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	total := 2 * procs * rounds
	start := time.Now()
	watch := "watch"
	switch os.Getenv("DLOCK_QEMU_WORKER") {
	case "poll":
		watch = "poll" // the workers poll only (WithWatch(false))
	case "run":
		watch = "run" // each round a dlock run, as a script would lock
	}
	args := []any{procs, rounds, hold, timeout, "/m1/" + name + "/lock", "/m1/" + name + "/counter", watch}
	ida := a.send(t, "workers", args...)
	idb := b.send(t, "workers", args...)
	var outages []string
	var outageTimes [][2]time.Time
	for i := range restarts {
		// after (i+1)/(restarts+1) of the acquisitions
		at := total * (i + 1) / (restarts + 1)
		for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
			n := 0
			for _, e := range append(parseWorkerEvents(a, ida), parseWorkerEvents(b, idb)...) {
				if e.kind == "acq" {
					n++
				}
			}
			if n >= at {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d acquisitions after 10 minutes", n)
			}
		}
		killed, up := restartGanesha(t, r, 2*time.Second, grace)
		outages = append(outages, fmt.Sprintf("%s-%s", rel(killed, start), rel(up, start)))
		outageTimes = append(outageTimes, [2]time.Time{killed, up})
	}
	budget := time.Duration(total)*(hold+2*time.Second) + 5*time.Minute
	da := a.wait(t, ida, "workers-done", budget)
	db := b.wait(t, idb, "workers-done", budget)
	took := time.Since(start)
	evs := append(parseWorkerEvents(a, ida), parseWorkerEvents(b, idb)...)
	var acqs []workerEvent
	var toldLost, warned []string
	lateWrite := map[uint64]bool{}
	byWho := map[string][]workerEvent{}
	for _, e := range evs {
		switch e.kind {
		case "acq":
			acqs = append(acqs, e)
			if e.lost {
				t.Errorf("%s acquired fence %d with its lock already lost", e.who, e.fence)
			}
		case "late-write":
			lateWrite[e.fence] = true
			t.Logf("  %s %s wrote the counter after it was told its lock (fence %d) was lost", rel(e.at, start), e.who, e.fence)
		case "rel":
			switch {
			case e.lost && grace > 0:
				// a grace period past the deadline: the holder could not
				// refresh, and must be told; the chain below says whether
				// anyone got in before it was
				toldLost = append(toldLost, fmt.Sprintf("%s %s (round %d, err=%s)", rel(e.at, start), e.who, e.round, e.err))
			case e.lost || e.err != "nil":
				t.Errorf("%s round %d: released with err=%s, told lost: %v", e.who, e.round, e.err, e.lost)
			}
		default:
			// dlock's warnings: with a grace period past the deadline a
			// holder must give its lock up and a waiter reclaim it, and
			// both say so; any other warning (a skew warning between
			// guests whose clocks agree), and any at all without one,
			// is wrong.
			if grace > 0 && (strings.Contains(e.detail, `msg="dlock: lost lock"`) || strings.Contains(e.detail, `msg="dlock: reclaimed lock"`)) {
				warned = append(warned, fmt.Sprintf("%s %s: %s", rel(e.at, start), e.who, e.detail))
				break
			}
			t.Errorf("%s: %s", e.who, e.detail)
		}
		byWho[e.who] = append(byWho[e.who], e)
	}
	sort.Slice(acqs, func(i, j int) bool { return acqs[i].fence < acqs[j].fence })
	// The chain: in fence order, each critical section read what the one
	// before it wrote.
	passes, run, longestRun, runGuest := 0, 0, 0, ""
	// A run is judged while the other guest still wants the lock: up to
	// its last acquisition (after it, one guest's workers finish alone).
	lastOf := map[string]int{}
	for i, e := range acqs {
		lastOf[e.guest] = i
	}
	judged := 0
	var longestWait workerEvent
	for i, e := range acqs {
		if i > 0 && acqs[i-1].fence == e.fence {
			t.Errorf("fence %d acquired twice: %s and %s", e.fence, acqs[i-1].who, e.who)
		}
		switch {
		case i == 0 && e.read != 0:
			t.Errorf("the first acquisition (fence %d, %s) read the counter at %d, want 0", e.fence, e.who, e.read)
		case i > 0 && e.read != acqs[i-1].read+1 && lateWrite[acqs[i-1].fence]:
			// the one before wrote after it was told it had lost the
			// lock (its write stuck in the NFS client): explained, not
			// the lock's, and what the fence is for
			t.Logf("  acquisition %d (fence %d, %s) read %d, not %d: the holder before it (%s) wrote after it was told its lock was lost",
				i, e.fence, e.who, e.read, acqs[i-1].read+1, acqs[i-1].who)
		case i > 0 && e.read != acqs[i-1].read+1:
			t.Errorf("acquisition %d (fence %d, %s) read the counter at %d, but the one before it (fence %d, %s) read %d: a critical section overlapped or a write was lost",
				i, e.fence, e.who, e.read, acqs[i-1].fence, acqs[i-1].who, acqs[i-1].read)
		}
		if e.guest != runGuest {
			if runGuest != "" {
				passes++
			}
			run, runGuest = 0, e.guest
		}
		run++
		longestRun = max(longestRun, run)
		for g, last := range lastOf {
			if g != e.guest && i < last {
				judged = max(judged, run)
			}
		}
		if e.wait > longestWait.wait {
			longestWait = e
		}
	}
	// The longest time a worker spent without the lock while it wanted
	// it: its longest wait. In holds: how many others' critical sections
	// that was worth.
	cs := hold.Seconds() + 0.05
	b2, _ := os.ReadFile(filepath.Join(host, "counter"))
	got, _ := strconv.Atoi(strings.TrimSpace(string(b2)))
	t.Logf("%s: 2 guests × %d processes × %d rounds, hold %v, TIMEOUT %v, workers %s, in %.1fs; server down (SIGKILL) and up again at %v (from the start, host clock)",
		what, procs, rounds, hold, timeout, watch, took.Seconds(), outages)
	t.Logf("  counter %d (want %d); acquisitions %d; workers failed: g1 %s, g2 %s", got, total, len(acqs),
		field(da.text, "failed"), field(db.text, "failed"))
	if restarts > 0 {
		t.Logf("  ganesha's grace period on restart: %v; holders told their lock was lost: %d %v", grace, len(toldLost), toldLost)
		for _, w := range warned {
			t.Logf("    %s", w)
		}
	}
	t.Logf("  passes between the guests %d of %d acquisitions; longest run of one guest %d (%d while the other wanted the lock); longest wait %.2fs (%s, fence %d, about %.0f holds)",
		passes, len(acqs), longestRun, judged, longestWait.wait, longestWait.who, longestWait.fence, longestWait.wait/cs)
	// Who had the lock in turn: runs of one guest.
	var order []string
	for i := 0; i < len(acqs); {
		j := i
		for j < len(acqs) && acqs[j].guest == acqs[i].guest {
			j++
		}
		order = append(order, fmt.Sprintf("%s×%d", acqs[i].guest, j-i))
		i = j
	}
	t.Logf("  turns (in fence order): %s", strings.Join(order, " "))
	// The timeline around each outage (all of it with DLOCK_QEMU_TIMELINE=1).
	for _, e := range acqs {
		near := os.Getenv("DLOCK_QEMU_TIMELINE") == "1"
		for _, o := range outageTimes {
			near = near || e.at.After(o[0].Add(-time.Second)) && e.at.Before(o[1].Add(3*time.Second))
		}
		if near {
			t.Logf("    %s %-6s acquired fence ...%d (waited %.3fs)", rel(e.at, start), e.who, e.fence%100000, e.wait)
		}
	}
	if got != total-len(lateWrite) && got != total || len(acqs) != total {
		t.Errorf("counter %d and %d acquisitions, want %d (%d late writes)", got, len(acqs), total, len(lateWrite))
	}
	if field(da.text, "failed") != "0" || field(db.text, "failed") != "0" {
		t.Errorf("workers failed: %s; %s", da.text, db.text)
	}
	if restarts == 0 {
		// No client waits more than a few holds: every worker of each
		// guest always wants the lock again, so while one guest holds
		// a run of turns the other's waiters wait (until the other's
		// workers are all done: judged). The waiters queue, and the
		// lock is handed to the first in line (lockdir's queue.go), so
		// a run is about procs long (each guest's workers queued one
		// after another); 2×procs is "a few". The longest wait of one
		// process is printed above, not judged: the bound is
		// per client. DLOCK_QEMU_TURNS=report prints it only (to
		// measure a version without the queue).
		switch {
		case os.Getenv("DLOCK_QEMU_TURNS") == "report":
			t.Logf("  NOT JUDGED (DLOCK_QEMU_TURNS=report): longest run of one guest %d while the other wanted the lock, bound %d", judged, 2*procs)
		case judged > 2*procs:
			t.Errorf("one guest held the lock %d times in a row while the other's %d processes waited (more than %d): one client starves the other",
				judged, procs, 2*procs)
		}
	}
}

// restartGanesha SIGKILLs the rig's nfs-ganesha, waits outage, starts it
// again with the same command line (with a grace period of grace, if not
// 0) and returns when it was killed and when it listened again.
func restartGanesha(t *testing.T, r qemuRig, outage, grace time.Duration) (killed, up time.Time) {
	t.Helper()
	pidFile := filepath.Join(r.state, "ganesha", "ganesha.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || pid <= 0 {
		t.Fatalf("ganesha (pid %d): %v", pid, err)
	}
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if filepath.Base(argv[0]) != "ganesha.nfsd" {
		t.Fatalf("pid %d in %s runs %q, not ganesha.nfsd", pid, pidFile, argv)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = time.Now()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", pid)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ganesha (pid %d) still there 10 s after SIGKILL", pid)
		}
	}
	time.Sleep(time.Until(killed.Add(outage)))
	out, err := os.OpenFile(filepath.Join(r.state, "ganesha", "ganesha.out"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// With a grace period: the same configuration, but not graceless.
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] != "-f" {
			continue
		}
		conf := strings.TrimSuffix(argv[i+1], ".grace")
		argv[i+1] = conf
		if grace > 0 {
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			g := int(grace.Seconds())
			c := strings.Replace(string(b), "Graceless = true;",
				fmt.Sprintf("Graceless = false;\n\tGrace_Period = %d;\n\tLease_Lifetime = %d;", g, g), 1)
			if err := os.WriteFile(conf+".grace", []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
			argv[i+1] = conf + ".grace"
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("restarting ganesha: %v", err)
	}
	os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	go cmd.Wait() // reaped if it exits while the test runs; qemu-nfs.sh down stops it
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+r.port, time.Second); err == nil {
			c.Close()
			return killed, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("ganesha did not listen on 127.0.0.1:%s again within 30 s", r.port)
		}
	}
}

// guestRunWorker is guestWorker with `dlock run` for each round, as a
// script would lock (a process per round): its COMMAND reads the counter,
// says so with DLOCK_FENCE, writes it plus one and keeps the lock for
// DLOCK_HOLD. Its lines are guestWorker's; wait is from starting dlock run
// to its COMMAND's first line, err dlock run's exit status.
func guestRunWorker() int {
	rounds, _ := strconv.Atoi(os.Getenv("DLOCK_ROUNDS"))
	hold, _ := time.ParseDuration(os.Getenv("DLOCK_HOLD"))
	script := fmt.Sprintf(`v=$(cat "$DLOCK_COUNTER") && echo "acq fence=$DLOCK_FENCE read=$v" && echo $((v + 1)) >"$DLOCK_COUNTER" && sleep %.3f`, hold.Seconds())
	bad := 0
	for i := range rounds {
		cmd := exec.Command("/bin/dlock", "run", "-stale-after", os.Getenv("DLOCK_TIMEOUT"), os.Getenv("DLOCK_PATH"), "--", "/bin/sh", "-c", script)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stdout // dlock run's own messages: the host counts them as failures
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			fmt.Printf("error %v\n", err)
			return 1
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "acq "); ok {
				fmt.Printf("acq %d %s wait=%.3f lostAlready=false\n", i, rest, time.Since(t0).Seconds())
			} else {
				fmt.Println(sc.Text())
			}
		}
		err := cmd.Wait()
		if err != nil {
			bad++
		}
		fmt.Printf("rel %d err=%s lost=false\n", i, errText(err))
	}
	if bad > 0 {
		return 1
	}
	return 0
}

// guestUncontended times N uncontended Lock+Unlock of one Lock at DIR/lock
// (made first) against N mkdir+rmdir of DIR/floor, the floor of any lock
// that makes an entry and removes it, in alternating blocks of 10, and
// counts the NFS RPCs of each from the mount's /proc/self/mountstats. It
// says: "dlock=MEDIAN floor=MEDIAN ratio=R dlockRPCs=PER-OP floorRPCs=PER-OP
// dlockOps=OP:PER-OP,... floorOps=...".
func guestUncontended(args []string) string {
	if len(args) != 2 {
		return "error=wants_DIR_N"
	}
	dir := args[0]
	n, _ := strconv.Atoi(args[1])
	mount := "/" + strings.Split(strings.TrimPrefix(dir, "/"), "/")[0]
	l, err := New(filepath.Join(dir, "lock"))
	if err == nil {
		if err = l.Lock(context.Background()); err == nil {
			err = l.Unlock()
		}
	}
	if err != nil {
		return "error=" + errText(err)
	}
	var tDlock, tFloor []time.Duration
	var sDlock, sFloor nfsStats
	floor := filepath.Join(dir, "floor")
	for done := 0; done < n; done += 10 {
		b := parseNFSStats(nfsMountStats(mount))
		for range 10 {
			t0 := time.Now()
			if err := l.Lock(context.Background()); err != nil {
				return "error=" + errText(err)
			}
			if err := l.Unlock(); err != nil {
				return "error=" + errText(err)
			}
			tDlock = append(tDlock, time.Since(t0))
		}
		m := parseNFSStats(nfsMountStats(mount))
		sDlock = sDlock.add(m.sub(b))
		for range 10 {
			t0 := time.Now()
			if err := os.Mkdir(floor, 0o755); err != nil {
				return "error=" + errText(err)
			}
			if err := os.Remove(floor); err != nil {
				return "error=" + errText(err)
			}
			tFloor = append(tFloor, time.Since(t0))
		}
		sFloor = sFloor.add(parseNFSStats(nfsMountStats(mount)).sub(m))
	}
	med := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	perOp := func(s nfsStats, k int) string {
		var parts []string
		for _, op := range slices.Sorted(maps.Keys(s.ops)) {
			parts = append(parts, fmt.Sprintf("%s:%.1f", op, float64(s.ops[op])/float64(k)))
		}
		return strings.Join(parts, ",")
	}
	md, mf := med(tDlock), med(tFloor)
	return fmt.Sprintf("dlock=%v floor=%v ratio=%.2f dlockRPCs=%.1f floorRPCs=%.1f dlockOps=%s floorOps=%s",
		md, mf, float64(md)/float64(mf), float64(sDlock.total)/float64(len(tDlock)), float64(sFloor.total)/float64(len(tFloor)),
		perOp(sDlock, len(tDlock)), perOp(sFloor, len(tFloor)))
}

// qemuUncontended prints, per mount variant, dlock's uncontended
// Lock+Unlock in a guest against the mkdir+rmdir floor of the same mount
// and run, as a ratio, and the NFS RPCs each costs. Measured, not judged
// (issue 26 wants it in the bench; this is the guests' side of it).
func qemuUncontended(t *testing.T, r qemuRig, a *qemuAgent) {
	name, _ := r.dir(t)
	n := envInt("DLOCK_QEMU_UNCONTENDED_ROUNDS", 100)
	t.Logf("uncontended in guest g1, %d Lock+Unlock of one Lock against %d mkdir+rmdir, alternating blocks of 10; medians, their ratio, NFS RPCs per operation:", n, n)
	t.Logf("| mount | dlock | mkdir+rmdir | ratio | RPCs dlock | RPCs floor | dlock's RPCs |")
	t.Logf("|---|---|---|---|---|---|---|")
	for i, v := range qemuMountVariants {
		dir := fmt.Sprintf("/m%d/%s/u%d", i+1, name, i)
		if err := os.Mkdir(filepath.Join(r.export, name, fmt.Sprintf("u%d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
		res := a.wait(t, a.send(t, "uncontended", dir, n), "uncontended", 10*time.Minute)
		if e := field(res.text, "error"); e != "" {
			t.Errorf("%s: %s", v.name, e)
			continue
		}
		t.Logf("| %s | %s | %s | %s | %s | %s | %s |", v.name, field(res.text, "dlock"), field(res.text, "floor"), field(res.text, "ratio"),
			field(res.text, "dlockRPCs"), field(res.text, "floorRPCs"), field(res.text, "dlockOps"))
	}
}
