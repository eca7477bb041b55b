package main

// Peers: the lock libraries users would pick instead of dlock, each run
// as a process of its own that speaks a line protocol on stdin/stdout
// (peers/python/peer.py, peers/node/peer.js, and this binary in peer mode
// for the Go ones). A command a line, an answer a line:
//
//	lock    -> ok [MONO [DETAIL]] | err MSG    wait for the lock
//	try     -> ok [MONO [DETAIL]] | busy | err one attempt
//	unlock  -> ok | err MSG
//	bench N -> ok NS             N uncontended lock+unlock inside the peer
//	pid     -> ok PID            the process that holds the lock (to pause it)
//	lost    -> ok no | ok unknown | ok told MONO WHY
//	           was the holder told that it lost the lock it holds (or held
//	           last)? unknown: the library has no way to tell its holder
//	log     -> ok [MONO MSG [| MONO MSG ...]]   what the library reported
//	           (its log, its loss callbacks) since the last lock or try
//
// MONO is CLOCK_MONOTONIC in ns, read by the peer right after the library
// returned (lock, try) or when it reported (lost, log): one clock for every
// process of a round, so that a round's timeline can be told (correct.go).
// DETAIL is free text (dlock's fence).
//
// The correctness checks drive peers directly; the contended speed trials
// put a peer behind a worker (peerLocker), which pays one pipe round trip
// per Lock and per Unlock (measured as the "pipe" row of the report).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/lockdir/dlock"
)

// Peer implementation names. "-tuned" marks a peer's fair settings
// (peers/python/peer.py and peers/node/peer.js say which); the plain name
// is the library's documented defaults.
const (
	implDlockRun = "dlock-run" // the CLI: dlock run PATH -- COMMAND, a process per acquisition
	implPipe     = "null"      // a Python peer that does nothing: the cost of the protocol itself
	peerEnv      = "DLOCKBENCH_PEER"
	peersDirEnv  = "DLOCKBENCH_PEERS"
	pythonEnv    = "DLOCKBENCH_PYTHON"
	dlockBinEnv  = "DLOCKBENCH_DLOCK_BIN"
	peerDelayEnv = "DLOCKBENCH_TEST_PEER_DELAY" // tests: a Go peer starts this much later
)

// pythonPeers and nodePeers are the peers in other languages; a name with
// "-tuned" appended is the same library with its tuned settings.
var (
	pythonPeers = []string{implPipe, "portalocker", "locket", "filelock", "softfilelock", "softfilelease", "strictsoftfilelock", "lockbydir"}
	nodePeers   = []string{"proper-lockfile"}
)

// peerLang tells which runtime serves impl: "python", "node", "go" (this
// binary in peer mode) or "" if impl is not a peer.
func peerLang(impl string) string {
	base, _ := strings.CutSuffix(impl, "-tuned")
	for _, p := range pythonPeers {
		if base == p {
			return "python"
		}
	}
	for _, p := range nodePeers {
		if base == p {
			return "node"
		}
	}
	switch impl {
	case implDlock, implDlockPoll, implDlock5, implFlock, implDlockRun, implNoLock, implStuck, implTold:
		return "go"
	}
	return ""
}

// isForeign: impl runs in another language, behind a pipe.
func isForeign(impl string) bool { l := peerLang(impl); return l == "python" || l == "node" }

// peerJob is what this binary gets in peerEnv when it is a Go peer.
type peerJob struct {
	Impl  string
	Path  string
	Stale time.Duration // TIMEOUT for dlock; 0: the default
}

// peerCommand is the command line that starts impl's peer on path.
// stale is the stale time / TIMEOUT (0: the library's default).
func peerCommand(impl, path string, stale time.Duration) (*exec.Cmd, error) {
	base, tuned := strings.CutSuffix(impl, "-tuned")
	config := "default"
	if tuned {
		config = "tuned"
	}
	dir := os.Getenv(peersDirEnv)
	var args []string
	switch peerLang(impl) {
	case "python":
		py := os.Getenv(pythonEnv)
		if py == "" {
			py = "python3"
		}
		args = []string{py, filepath.Join(dir, "python", "peer.py"), base, config, path}
	case "node":
		args = []string{"node", filepath.Join(dir, "node", "peer.js"), base, config, path}
	case "go":
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		js, _ := json.Marshal(peerJob{Impl: impl, Path: path, Stale: stale})
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), peerEnv+"="+string(js))
		return cmd, nil
	default:
		return nil, fmt.Errorf("no peer %q", impl)
	}
	if stale > 0 {
		args = append(args, strconv.FormatFloat(stale.Seconds(), 'f', -1, 64))
	}
	return exec.Command(args[0], args[1:]...), nil
}

// errBusy is a "try" that found the lock held.
var errBusy = errors.New("busy")

// peerProc is a running peer.
type peerProc struct {
	impl   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *strings.Builder
	done   chan struct{} // closed when the process exited
	guest  *guestPeer    // if set, the peer runs in a qemu guest (nfs.go) and cmd is nil
}

// startPeer starts impl's peer on path and waits until it is ready.
func startPeer(impl, path string, stale time.Duration) (*peerProc, error) {
	if g, gpath, ok := guestPath(path); ok {
		return g.startPeer(impl, gpath, stale)
	}
	cmd, err := peerCommand(impl, path, stale)
	if err != nil {
		return nil, err
	}
	p := &peerProc{impl: impl, cmd: cmd, stderr: new(strings.Builder), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	// A peer ends with the process that drives it: a worker killed at a
	// trial's limit (a lock that never acquires) must not leave its peer
	// polling the mount for the rest of the run, where it would count as
	// the server operations of the locks measured after it.
	cmd.SysProcAttr = peerSysProcAttr()
	if p.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", impl, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	line, err := p.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		p.kill()
		<-p.done
		return nil, fmt.Errorf("%s peer did not start (%q, %v): %s", impl, line, err, p.stderr.String())
	}
	return p, nil
}

// call sends one command and returns what follows "ok". If ctx ends
// before the answer, the peer is killed (a peer stuck in its library must
// not hang the run) and the error says so.
func (p *peerProc) call(ctx context.Context, cmd string) (string, error) {
	stop := context.AfterFunc(ctx, p.kill)
	defer stop()
	if _, err := io.WriteString(p.in, cmd+"\n"); err != nil {
		return "", p.callErr(ctx, cmd, err)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return "", p.callErr(ctx, cmd, err)
	}
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		return "", nil
	case strings.HasPrefix(line, "ok "):
		return line[3:], nil
	case line == "busy":
		return "", errBusy
	}
	return "", fmt.Errorf("%s peer: %s: %s", p.impl, cmd, strings.TrimPrefix(line, "err "))
}

// errGaveUp: a peer did not answer in time and was killed.
var errGaveUp = errors.New("no answer in time: the peer was killed")

func (p *peerProc) callErr(ctx context.Context, cmd string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s peer: %s: %w (%v)", p.impl, cmd, errGaveUp, context.Cause(ctx))
	}
	return fmt.Errorf("%s peer: %s: %v (peer's stderr: %s)", p.impl, cmd, err, strings.TrimSpace(p.stderr.String()))
}

// stamp is when a peer acquired (CLOCK_MONOTONIC, ns, as the peer read
// it; 0 if it did not say) and what else it said (dlock's fence).
type stamp struct {
	at     int64
	detail string
}

func parseStamp(s string) stamp {
	f, rest, _ := strings.Cut(s, " ")
	at, _ := strconv.ParseInt(f, 10, 64)
	return stamp{at: at, detail: rest}
}

// Lock waits for the lock; ctx bounds the wait (the peer is killed then).
func (p *peerProc) Lock(ctx context.Context) error { _, err := p.lockAt(ctx); return err }
func (p *peerProc) Unlock() error                  { _, err := p.call(context.Background(), "unlock"); return err }

func (p *peerProc) lockAt(ctx context.Context) (stamp, error) {
	s, err := p.call(ctx, "lock")
	if err != nil {
		return stamp{}, err
	}
	return parseStamp(s), nil
}

// unlockIn is Unlock bounded by d.
func (p *peerProc) unlockIn(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := p.call(ctx, "unlock")
	return err
}

// try is one attempt: true if it acquired, and when.
func (p *peerProc) try(ctx context.Context) (bool, stamp, error) {
	s, err := p.call(ctx, "try")
	if errors.Is(err, errBusy) {
		return false, stamp{}, nil
	}
	if err != nil {
		return false, stamp{}, err
	}
	return true, parseStamp(s), nil
}

// lostNews is what a holder was told about losing its lock.
type lostNews struct {
	can  bool  // the library tells its holder at all
	told bool  // it told this one
	at   int64 // when (CLOCK_MONOTONIC, ns)
	why  string
}

// lost asks the peer whether its holder was told that it lost the lock.
func (p *peerProc) lost(ctx context.Context) (lostNews, error) {
	s, err := p.call(ctx, "lost")
	if err != nil {
		return lostNews{}, err
	}
	switch {
	case s == "unknown":
		return lostNews{}, nil
	case s == "no":
		return lostNews{can: true}, nil
	case strings.HasPrefix(s, "told "):
		st := parseStamp(strings.TrimPrefix(s, "told "))
		return lostNews{can: true, told: true, at: st.at, why: st.detail}, nil
	}
	return lostNews{}, fmt.Errorf("%s peer: lost: unexpected answer %q", p.impl, s)
}

// logged is what the peer's library reported since its last lock or try:
// events stamped on CLOCK_MONOTONIC.
func (p *peerProc) logged(ctx context.Context) []stamp {
	s, err := p.call(ctx, "log")
	if err != nil || s == "" {
		return nil
	}
	var out []stamp
	for _, e := range strings.Split(s, " | ") {
		if st := parseStamp(e); st.at != 0 {
			out = append(out, st)
		}
	}
	return out
}

// holderPid is the process that holds (or would hold) the lock.
func (p *peerProc) holderPid() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	s, err := p.call(ctx, "pid")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(s)
}

// peerCallLimit bounds a call that does not wait for a lock (pid, try,
// lost, log, unlock): a peer that takes longer is stuck, not slow, even
// on a loaded machine.
const peerCallLimit = 60 * time.Second

// bench runs n uncontended lock+unlock inside the peer; ctx bounds it.
func (p *peerProc) bench(ctx context.Context, n int) (time.Duration, error) {
	s, err := p.call(ctx, fmt.Sprintf("bench %d", n))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	return time.Duration(ns), err
}

// cpu is the CPU time the peer's process has used so far: the sum of its
// threads' run times (/proc/PID/task/*/schedstat, in ns), or 0.
func (p *peerProc) cpu() int64 {
	if p.cmd == nil {
		return 0
	}
	return procCPU(p.cmd.Process.Pid)
}

func procCPU(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			sum += v
		}
	}
	return sum
}

func (p *peerProc) kill() {
	if p.guest != nil {
		p.guest.g.write(p.guest.id + " kill")
		return
	}
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
	}
}

// Close ends the peer: stdin closed, then killed if it lingers.
func (p *peerProc) Close() error {
	p.in.Close()
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		p.kill()
		<-p.done
	}
	return nil
}

// maybePeer serves the line protocol with a Go lock, if this process was
// started as a Go peer, and exits.
func maybePeer() {
	s := os.Getenv(peerEnv)
	if s == "" {
		return
	}
	var job peerJob
	if err := json.Unmarshal([]byte(s), &job); err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(2)
	}
	// The bench's tests stand in for a loaded machine with peers that
	// start slowly.
	if d, err := time.ParseDuration(os.Getenv(peerDelayEnv)); err == nil {
		time.Sleep(d)
	}
	if err := servePeer(job, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// goPeerLock is a Go lock as the protocol needs it.
type goPeerLock interface {
	locker
	TryLock() (bool, error)
}

// peerNews is what a Go peer's lock reported: events stamped on
// CLOCK_MONOTONIC, and whether (and when, and why) its holder was told
// that it lost the lock. can: the lock tells its holder at all.
type peerNews struct {
	mu   sync.Mutex
	can  bool
	ev   []stamp
	told *stamp
	// more, if set, is closed when a loss report of several lines (dlock
	// run's: what it does, then why) is complete.
	more chan struct{}
}

// expectMore says that the loss report just begun has more to come.
func (n *peerNews) expectMore() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.more == nil {
		n.more = make(chan struct{})
	}
}

// gotMore says that the loss report is complete.
func (n *peerNews) gotMore() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.more != nil {
		select {
		case <-n.more:
		default:
			close(n.more)
		}
	}
}

func (n *peerNews) add(msg string, lost bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := stamp{at: mono(), detail: strings.ReplaceAll(msg, "|", "/")}
	n.ev = append(n.ev, st)
	switch {
	case lost && n.told == nil:
		n.told = &st
	case lost:
		// More of the same report (dlock run says why on its next line):
		// the time stays the first line's.
		n.told.detail += " / " + st.detail
	}
}

// reset forgets what was reported before an acquisition.
func (n *peerNews) reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ev, n.told, n.more = nil, nil, nil
}

func (n *peerNews) lostAnswer() string {
	n.mu.Lock()
	more := n.more
	n.mu.Unlock()
	if more != nil {
		// The rest of a report under way (its why) comes within the
		// CLI's grace for the job; a CLI that died says no more.
		select {
		case <-more:
		case <-time.After(5 * time.Second):
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case !n.can:
		return "ok unknown"
	case n.told == nil:
		return "ok no"
	}
	return fmt.Sprintf("ok told %d %s", n.told.at, n.told.detail)
}

func (n *peerNews) logAnswer() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	parts := make([]string, len(n.ev))
	for i, e := range n.ev {
		parts[i] = fmt.Sprintf("%d %s", e.at, e.detail)
	}
	return strings.TrimSpace("ok " + strings.Join(parts, " | "))
}

// newsHandler is a slog.Handler that keeps dlock's warnings (a reclaim, a
// failed refresh, a lost lock) in a peerNews. Info (every acquisition and
// release) is not even formatted.
type newsHandler struct{ n *peerNews }

func (h newsHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h newsHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h newsHandler) WithGroup(string) slog.Handler                { return h }
func (h newsHandler) Handle(_ context.Context, r slog.Record) error {
	msg := strings.TrimPrefix(r.Message, "dlock: ")
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "path" {
			msg += fmt.Sprintf(" %s=%q", a.Key, a.Value.String())
		}
		return true
	})
	h.n.add(msg, r.Message == "dlock: lost lock")
	return nil
}

func newGoPeerLock(job peerJob, news *peerNews) (goPeerLock, int, error) {
	pid := os.Getpid()
	switch job.Impl {
	case implDlock, implDlockPoll, implDlock5:
		news.can = true
		opts := []dlock.Option{dlock.WithWatch(job.Impl != implDlockPoll), dlock.WithLogger(slog.New(newsHandler{news}))}
		if job.Impl == implDlock5 {
			opts = append(opts, dlock.WithPollInterval(5*time.Millisecond))
		}
		if job.Stale > 0 {
			opts = append(opts, dlock.WithTimeout(job.Stale))
		}
		l, err := dlock.New(job.Path, opts...)
		return l, pid, err
	case implFlock:
		return flockPeer{flockLocker{flock.New(job.Path)}}, pid, nil
	case implDlockRun:
		news.can = true
		l, err := newRunLocker(job.Path, job.Stale)
		if l != nil {
			l.news = news
		}
		return l, 0, err
	case implNoLock:
		return noLock{}, pid, nil
	case implTold:
		news.can = true
		return toldLock{news}, pid, nil
	case implStuck:
		return stuckLock{}, pid, nil
	}
	return nil, 0, fmt.Errorf("no Go peer %q", job.Impl)
}

type flockPeer struct{ flockLocker }

func (f flockPeer) TryLock() (bool, error) { return f.f.TryLock() }

// Two locks for the bench's own tests: noLock never excludes anybody (as
// flock across two sshfs mounts), stuckLock never acquires (as
// StrictSoftFileLock through sshfs).
const (
	implNoLock = "test-nolock"
	implStuck  = "test-stuck"
	// implTold never excludes either, and reports at each acquisition a
	// loss with the reason in $DLOCKBENCH_TEST_TOLD.
	implTold    = "test-told"
	testToldEnv = "DLOCKBENCH_TEST_TOLD"
)

type toldLock struct{ news *peerNews }

func (t toldLock) Lock(context.Context) error {
	t.news.add("lost lock reason="+os.Getenv(testToldEnv), true)
	return nil
}
func (t toldLock) TryLock() (bool, error) { return true, t.Lock(context.Background()) }
func (toldLock) Unlock() error            { return nil }

type noLock struct{}

func (noLock) Lock(context.Context) error { return nil }
func (noLock) TryLock() (bool, error)     { return true, nil }
func (noLock) Unlock() error              { return nil }

type stuckLock struct{}

func (stuckLock) Lock(ctx context.Context) error { select {} }
func (stuckLock) TryLock() (bool, error)         { return false, nil }
func (stuckLock) Unlock() error                  { return errors.New("not held") }

func servePeer(job peerJob, in io.Reader, out io.Writer) error {
	news := new(peerNews)
	l, pid, err := newGoPeerLock(job, news)
	if err != nil {
		return err
	}
	// acquired says when, and with which fence.
	acquired := func() string {
		s := fmt.Sprintf("ok %d", mono())
		if d, ok := l.(*dlock.Lock); ok {
			s += fmt.Sprintf(" fence=%d", d.Fence())
		}
		return s
	}
	w := bufio.NewWriter(out)
	fmt.Fprintln(w, "ready")
	w.Flush()
	sc := bufio.NewScanner(in)
	ctx := context.Background()
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		ans := "ok"
		var err error
		switch f[0] {
		case "lock":
			news.reset()
			if err = l.Lock(ctx); err == nil {
				ans = acquired()
			}
		case "try":
			news.reset()
			var ok bool
			if ok, err = l.TryLock(); err == nil && !ok {
				ans = "busy"
			} else if err == nil {
				ans = acquired()
			}
		case "unlock":
			err = l.Unlock()
		case "bench":
			n, _ := strconv.Atoi(f[1])
			start := time.Now()
			for range n {
				if err = l.Lock(ctx); err == nil {
					err = l.Unlock()
				}
				if err != nil {
					break
				}
			}
			ans = fmt.Sprintf("ok %d", time.Since(start).Nanoseconds())
		case "pid":
			p := pid
			if r, ok := l.(*runLocker); ok {
				p = r.pid()
			}
			ans = fmt.Sprintf("ok %d", p)
		case "lost":
			ans = news.lostAnswer()
		case "log":
			ans = news.logAnswer()
		case "quit":
			return nil
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			ans = "err " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Fprintln(w, ans)
		w.Flush()
	}
	return sc.Err()
}

// runLocker is the CLI as a shell user calls it: Lock starts
// `dlock run PATH -- sh -c 'echo; read x'` and returns once COMMAND runs
// (it printed its line); Unlock ends COMMAND and waits for dlock to exit.
type runLocker struct {
	bin, path string
	stale     time.Duration
	cmd       *exec.Cmd
	in        io.WriteCloser
	news      *peerNews // if set: gets the CLI's messages, stamped
}

func newRunLocker(path string, stale time.Duration) (*runLocker, error) {
	bin := os.Getenv(dlockBinEnv)
	if bin == "" {
		return nil, fmt.Errorf("dlock-run: %s is not set (the bench builds ./cmd/dlock)", dlockBinEnv)
	}
	return &runLocker{bin: bin, path: path, stale: stale}, nil
}

// pid is the process that holds the lock: not the dlock process started
// (the front, which only forwards signals and waits) but its child, the
// supervisor, which took the lock and heartbeats it (cmd/dlock's
// front_unix.go). Stopping the front would pause nothing.
func (r *runLocker) pid() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	front := r.cmd.Process.Pid
	// A child is listed under the thread that forked it.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", front))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		if f := strings.Fields(string(b)); len(f) > 0 {
			if sup, err := strconv.Atoi(f[0]); err == nil {
				return sup
			}
		}
	}
	return front
}

func (r *runLocker) start(patience string) (bool, error) {
	args := []string{"run", "-q", "-patience", patience}
	if r.stale > 0 {
		args = append(args, "-stale-after", r.stale.String())
	}
	args = append(args, r.path, "--", "sh", "-c", "echo; read x")
	cmd := exec.Command(r.bin, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return false, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	stderr := &stampWriter{news: r.news}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return false, err
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 75 {
			return false, nil
		}
		return false, fmt.Errorf("dlock run: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	r.cmd, r.in = cmd, in
	return true, nil
}

func (r *runLocker) Lock(context.Context) error { _, err := r.start("forever"); return err }
func (r *runLocker) TryLock() (bool, error)     { return r.start("0") }

func (r *runLocker) Unlock() error {
	if r.cmd == nil {
		return errors.New("dlock run: not held")
	}
	r.in.Write([]byte("\n"))
	r.in.Close()
	err := r.cmd.Wait()
	r.cmd = nil
	if err != nil {
		return fmt.Errorf("dlock run: %w", err)
	}
	return nil
}

// stampWriter keeps what the CLI writes to stderr and hands each line,
// stamped when it arrived, to news: "lost the lock" is the CLI telling
// its job (and its user) that the lock was lost.
type stampWriter struct {
	mu      sync.Mutex
	all     strings.Builder
	partial []byte
	news    *peerNews
}

func (w *stampWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(b)
	if w.news == nil {
		return len(b), nil
	}
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
		if line == "" {
			continue
		}
		// "dlock: lost the lock PATH while CMD (pid N) ran: stopping the
		// job", then, once the job has stopped, "dlock: PATH: lost the
		// lock (fence F): WHY".
		lost := strings.Contains(line, "lost the lock")
		if lost && strings.Contains(line, "stopping the job") {
			w.news.expectMore()
		}
		w.news.add("dlock run said: "+line, lost)
		if strings.Contains(line, "lost the lock (fence") {
			w.news.gotMore()
		}
	}
	return len(b), nil
}

func (w *stampWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}
