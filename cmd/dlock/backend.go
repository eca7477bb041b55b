package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/internal/backendproto"
)

// A PATH of the form SCHEME://… names a lock kept by a server instead of
// a lock directory: postgres:// and postgresql:// (pglock), etcd://
// (etcdlock), or any SCHEME whose helper program dlock-backend-SCHEME is
// installed. The helper links the server's client library, so that this
// command does not (it stays small and quick to start); dlock starts it
// and talks to it over a pipe (internal/backendproto). backendLock is the
// dlock.Locker on the dlock side of that pipe.

// backendScheme returns the scheme of a URL PATH ("postgres" for
// postgres://… and postgresql://…), or "" for a lock directory.
func backendScheme(path string) string {
	i := strings.Index(path, "://")
	if i <= 0 {
		return ""
	}
	s := strings.ToLower(path[:i])
	for j, r := range s {
		letter := r >= 'a' && r <= 'z'
		if !letter && (j == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return ""
		}
	}
	if s == "postgresql" {
		s = "postgres"
	}
	return s
}

// displayPath is PATH for messages: a URL's password hidden.
func displayPath(path string) string {
	if backendScheme(path) == "" {
		return path
	}
	return backendproto.Redact(path)
}

// backendInstall says how to install the helper of a scheme dlock knows.
var backendInstall = map[string]string{
	"postgres": "go install github.com/lockdir/dlock/pglock/cmd/dlock-backend-postgres@latest",
	"etcd":     "go install github.com/lockdir/dlock/etcdlock/cmd/dlock-backend-etcd@latest",
}

// findBackend finds the helper program for scheme: next to dlock's own
// executable first (where packages install it), then on PATH.
func findBackend(scheme string) (string, error) {
	name := "dlock-backend-" + scheme
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	var dir string
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	how := "install it"
	if h, ok := backendInstall[scheme]; ok {
		how += " (" + h + ")"
	} else {
		how = "dlock knows no " + scheme + ":// backend; one is a program of that name speaking dlock's backend protocol"
	}
	return "", fmt.Errorf("dlock: a %s:// lock is kept by the program %s, found neither next to dlock (in %s) nor on PATH: %s", scheme, name, dir, how)
}

// backendFDsEnv passes the supervisor the pipes to a helper its front
// process started: "IN,OUT,ERR", the helper's stdin, stdout and stderr.
const backendFDsEnv = "DLOCK_BACKEND_FDS"

// heartbeat is how often the helper says it still holds the lock: dlock
// takes 4 beats of silence (half the reaction slack) as a loss, so that a
// helper stopped or hung while its lease runs out still leaves the job
// the other half and -grace to be stopped in.
func heartbeat(timeout time.Duration) time.Duration {
	return max(reactionSlack(timeout)/8, 10*time.Millisecond)
}

// backendLock is a dlock.Locker kept by a helper process.
type backendLock struct {
	name    string // the URL, its password hidden
	w       io.Writer
	hb      time.Duration
	timeout time.Duration // TIMEOUT
	cmd     *exec.Cmd     // when this process started the helper

	opMu    sync.Mutex  // one request at a time
	wmu     sync.Mutex  // whole lines
	replies chan string // answers to requests
	dead    chan struct{}
	alive   chan struct{}

	mu       sync.Mutex
	lost     chan struct{} // the current or last acquisition's
	lostWhy  string
	holding  bool
	fence    uint64
	stopWait chan struct{} // ends the watchdog of the acquisition
	silent   bool          // the helper fell silent: it is stopped or hung
}

var _ dlock.Locker = (*backendLock)(nil)

// openBackend starts (or, in a supervisor whose front process started it,
// takes over) the helper for path and opens the lock. margin 0 leaves
// MARGIN to the backend.
func (lf *lockFlags) openBackend(path string, margin time.Duration) (dlock.Locker, string, error) {
	scheme := backendScheme(path)
	if err := lf.checkBackendFlags(path); err != nil {
		return nil, "", err
	}
	var w io.WriteCloser
	var r io.Reader
	var cmd *exec.Cmd
	if fds := os.Getenv(backendFDsEnv); fds != "" {
		os.Unsetenv(backendFDsEnv) // not for the job
		var err error
		if w, r, err = inheritedPipes(fds); err != nil {
			return nil, "", err
		}
	} else {
		prog, err := findBackend(scheme)
		if err != nil {
			return nil, "", err
		}
		cmd = exec.Command(prog)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = backendProcAttr()
		if w, err = cmd.StdinPipe(); err != nil {
			return nil, "", err
		}
		pr, err := cmd.StdoutPipe()
		if err != nil {
			return nil, "", err
		}
		r = pr
		if err := cmd.Start(); err != nil {
			return nil, "", fmt.Errorf("dlock: starting %s: %w", prog, err)
		}
	}
	b := &backendLock{name: displayPath(path), w: w, hb: heartbeat(lf.timeout), timeout: lf.timeout, cmd: cmd,
		replies: make(chan string, 4), dead: make(chan struct{}), alive: make(chan struct{}, 1), lost: make(chan struct{})}
	go b.read(r)
	err := b.send(backendproto.EncodeOpen(backendproto.Options{URL: path, Timeout: lf.timeout, Margin: margin,
		Patience: lf.patience, Poll: lf.poll, Heartbeat: b.hb, Verbose: lf.verbose}))
	if err == nil {
		var verb, arg string
		verb, arg, err = b.answer(context.Background())
		switch {
		case err != nil:
		case verb == "opened":
			b.name = arg
		case verb == "error": // the helper's message names the URL as it can
			err = backendproto.DecodeError(arg)
		default:
			err = fmt.Errorf("dlock: %s: the backend helper answered %q to open", b.name, verb)
		}
	}
	if err != nil {
		w.Close()
		b.reap()
		return nil, "", err
	}
	return b, b.name, nil
}

// inheritedPipes are the pipes named by DLOCK_BACKEND_FDS: the helper's
// stdin, stdout and stderr, whose lines this process copies to its own
// stderr (wherever that points at the time).
func inheritedPipes(fds string) (io.WriteCloser, io.Reader, error) {
	var n []int
	for _, f := range strings.Split(fds, ",") {
		fd, err := strconv.Atoi(f)
		if err != nil || fd < 3 {
			return nil, nil, fmt.Errorf("dlock: bad %s=%q", backendFDsEnv, fds)
		}
		closeOnExec(fd)
		n = append(n, fd)
	}
	if len(n) != 3 {
		return nil, nil, fmt.Errorf("dlock: bad %s=%q", backendFDsEnv, fds)
	}
	go io.Copy(os.Stderr, os.NewFile(uintptr(n[2]), "backend-err"))
	return os.NewFile(uintptr(n[0]), "backend-in"), os.NewFile(uintptr(n[1]), "backend-out"), nil
}

// read sorts the helper's lines into answers and notices; the end of
// its output (its death) is a loss.
func (b *backendLock) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		verb, arg := backendproto.Split(sc.Text())
		switch verb {
		case "alive":
			select {
			case b.alive <- struct{}{}:
			default:
			}
		case "lost":
			b.markLost(arg)
		default:
			b.replies <- sc.Text()
		}
	}
	close(b.dead)
	b.markLost("the backend helper exited: nobody refreshes its lease any more")
}

// markLost closes the acquisition's Lost channel once.
func (b *backendLock) markLost(why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.lost:
	default:
		b.lostWhy = why
		close(b.lost)
	}
}

func (b *backendLock) send(line string) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if _, err := io.WriteString(b.w, line+"\n"); err != nil {
		return fmt.Errorf("dlock: %s: the backend helper is gone: %w", b.name, err)
	}
	return nil
}

// answer waits for the answer to the request sent; when ctx ends first it
// sends cancel and waits for the answer still.
func (b *backendLock) answer(ctx context.Context) (verb, arg string, err error) {
	return b.answerWithin(ctx, 0)
}

// answerWithin is answer, giving up after within (if not 0): the helper
// is then beyond use, as its late answer would be taken for the next.
func (b *backendLock) answerWithin(ctx context.Context, within time.Duration) (verb, arg string, err error) {
	done := ctx.Done()
	var late <-chan time.Time
	if within > 0 {
		t := time.NewTimer(within)
		defer t.Stop()
		late = t.C
	}
	for {
		select {
		case line := <-b.replies:
			verb, arg = backendproto.Split(line)
			return verb, arg, nil
		case <-done:
			done = nil
			b.send("cancel")
		case <-late:
			if c, ok := b.w.(io.Closer); ok {
				c.Close() // the helper ends at the end of its input
			}
			return "", "", fmt.Errorf("dlock: %s: the backend helper did not answer within %s", b.name, within)
		case <-b.dead:
			select {
			case line := <-b.replies:
				verb, arg = backendproto.Split(line)
				return verb, arg, nil
			default:
			}
			return "", "", fmt.Errorf("dlock: %s: the backend helper exited without answering (its messages, if any, are above)", b.name)
		}
	}
}

// Lock waits for the lock as the helper was told (PATIENCE), or until ctx
// is done.
func (b *backendLock) Lock(ctx context.Context) error {
	_, err := b.acquire(ctx, "lock")
	return err
}

// TryLock makes one attempt.
func (b *backendLock) TryLock() (bool, error) {
	return b.acquire(context.Background(), "trylock")
}

func (b *backendLock) acquire(ctx context.Context, verb string) (bool, error) {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	if b.holding {
		b.mu.Unlock()
		return false, fmt.Errorf("dlock: %s: %w", b.name, dlock.ErrHeld)
	}
	// A fresh Lost channel before asking: a loss the helper reports
	// before "acquired" (a deadline already past) lands on it.
	b.lost, b.lostWhy = make(chan struct{}), ""
	b.mu.Unlock()
	if err := b.send(verb); err != nil {
		return false, err
	}
	v, arg, err := b.answer(ctx)
	if err != nil {
		return false, err
	}
	switch v {
	case "acquired":
		fence, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			return false, fmt.Errorf("dlock: %s: the backend helper answered a bad fence %q", b.name, arg)
		}
		b.mu.Lock()
		b.holding, b.fence = true, fence
		b.stopWait = make(chan struct{})
		go b.watch(b.lost, b.stopWait)
		b.mu.Unlock()
		return true, nil
	case "busy":
		busy, err := backendproto.DecodeBusy(arg)
		if err != nil {
			return false, fmt.Errorf("dlock: %s: %w", b.name, err)
		}
		if verb == "trylock" {
			return false, nil
		}
		busy.Path = b.name
		return false, busy
	case "error":
		re := backendproto.DecodeError(arg)
		if re.Kind == backendproto.KindCanceled && ctx.Err() != nil {
			return false, fmt.Errorf("dlock: %s: %w", b.name, context.Cause(ctx))
		}
		return false, re
	}
	return false, fmt.Errorf("dlock: %s: the backend helper answered %q to %s", b.name, v, verb)
}

// watch is the acquisition's watchdog: 4 of its own heartbeats without a
// word from the helper are a loss. It counts its own ticks rather than
// time, so that a pause of dlock itself (a CPU quota, a frozen cgroup, a
// loaded host) is not taken for the helper's silence: after a pause it
// sees one late tick, and the helper's words written meanwhile reset it.
func (b *backendLock) watch(lost, stop chan struct{}) {
	const beats = 4
	t := time.NewTicker(b.hb)
	defer t.Stop()
	silent := 0
	for {
		select {
		case <-b.alive:
			silent = 0
		case <-t.C:
			if silent++; silent < beats {
				break
			}
			b.mu.Lock()
			b.silent = true
			b.mu.Unlock()
			b.markLost(fmt.Sprintf("the backend helper said nothing for %s: it is stopped or hung, and its lease may run out unseen", beats*b.hb))
			return
		case <-lost:
			return
		case <-stop:
			return
		}
	}
}

// Unlock releases the lock: an error matching dlock.ErrLost if it was
// lost while held (the helper said so, fell silent or died).
func (b *backendLock) Unlock() error {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	if !b.holding {
		b.mu.Unlock()
		return fmt.Errorf("dlock: %s: %w", b.name, dlock.ErrNotHeld)
	}
	b.holding = false
	close(b.stopWait)
	lost, fence := b.lost, b.fence
	within := b.timeout
	if b.silent {
		within = 4 * b.hb // it did not answer for this long already
	}
	b.mu.Unlock()
	lostErr := func(now string) error {
		b.mu.Lock()
		why := b.lostWhy
		b.mu.Unlock()
		return &dlock.LostError{Path: b.name, Fence: fence, Why: why, Now: now}
	}
	// The helper's Unlock waits for the server within the deadline at
	// most; a helper that does not answer for TIMEOUT is stopped or hung,
	// and its lease runs out without it.
	err := b.send("unlock")
	var v, arg string
	if err == nil {
		v, arg, err = b.answerWithin(context.Background(), within)
	}
	switch {
	case err != nil:
		select {
		case <-lost:
			return lostErr("its lease runs out after TIMEOUT")
		default:
			return err
		}
	case v == "unlocked":
		select {
		case <-lost: // told of a loss (a silence) that turned out not to be one
			return lostErr("the helper released it since")
		default:
			return nil
		}
	case v == "error":
		return backendproto.DecodeError(arg)
	}
	return fmt.Errorf("dlock: %s: the backend helper answered %q to unlock", b.name, v)
}

// Lost is closed when the current (or last) acquisition is lost.
func (b *backendLock) Lost() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lost
}

// Fence is the fencing token of the current (or last) acquisition.
func (b *backendLock) Fence() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fence
}

// Close ends the helper (it releases nothing it still holds: call Unlock
// first) and waits for it.
func (b *backendLock) Close() error {
	if c, ok := b.w.(io.Closer); ok {
		c.Close()
	}
	b.reap()
	return nil
}

// reap waits for a helper this process started.
func (b *backendLock) reap() {
	if b.cmd == nil {
		return
	}
	select {
	case <-b.dead:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
	}
	b.cmd.Wait()
}

// openLock opens the lock of "dlock run": a helper's for a URL PATH (and
// from here on, messages show the URL without its password), a lock
// directory otherwise.
func (c *runConfig) openLock(extra ...dlock.Option) (dlock.Locker, string, error) {
	if backendScheme(c.path) == "" {
		return c.open(c.path, extra...)
	}
	url := c.path
	c.path = displayPath(url)
	return c.openBackend(url, c.margin)
}

// checkBackendFlags refuses the flags that only lock directories have.
func (lf *lockFlags) checkBackendFlags(path string) error {
	if lf.shared || lf.exclusive || lf.slots > 0 {
		return fmt.Errorf("dlock: %s: -s, -x and -slots are for lock directories; a %s:// lock is a plain lock", displayPath(path), backendScheme(path))
	}
	return nil
}

// inspectBackend is dlock status of a URL PATH: a helper of its own is
// asked who holds the lock.
func inspectBackend(path string) (dlock.Status, error) {
	lf := &lockFlags{timeout: dlock.DefaultTimeout, poll: dlock.DefaultPollInterval}
	l, name, err := lf.openBackend(path, 0)
	if err != nil {
		return dlock.Status{Path: displayPath(path)}, err
	}
	b := l.(*backendLock)
	defer b.Close()
	st := dlock.Status{Path: name}
	if err := b.send("inspect"); err != nil {
		return st, err
	}
	v, arg, err := b.answerWithin(context.Background(), 2*lf.timeout)
	switch {
	case err != nil:
		return st, err
	case v == "error":
		return st, backendproto.DecodeError(arg)
	case v != "status":
		return st, fmt.Errorf("dlock: %s: the backend helper answered %q to inspect", name, v)
	}
	h, age, held, err := backendproto.DecodeStatus(arg)
	if err != nil {
		return st, fmt.Errorf("dlock: %s: %w", name, err)
	}
	if h.Beat.IsZero() && !h.Since.IsZero() {
		// The server keeps no holder's time of refresh: this host's
		// clock, less the age, says how long it has held the lock.
		h.Beat = time.Now().Add(-age)
	}
	// A server's lock exists while it is held (a release deletes pglock's
	// row and etcdlock's key).
	st.Exists, st.Held, st.Holder, st.Fence, st.Age = held, held, h, h.Fence, age
	return st, nil
}

// statusText is dlock status's line for s.
func statusText(s dlock.Status, path string) string {
	if backendScheme(path) != "" && !s.Held {
		return s.Path + ": free"
	}
	return s.String()
}

// errServerLock: break works on lock directories only, so far.
func errServerLock(path string) error {
	look := "the server's own tools"
	switch backendScheme(path) {
	case "postgres":
		look = "SELECT * FROM dlock_leases"
	case "etcd":
		look = "etcdctl get --prefix KEY/"
	}
	return fmt.Errorf("dlock: %s: break reads lock directories only; the server keeps this lock (look with dlock status, or %s), and it expires on its own TIMEOUT after its holder stops refreshing it",
		displayPath(path), look)
}
