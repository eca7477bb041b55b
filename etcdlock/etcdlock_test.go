package etcdlock_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/etcdlock"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Environment of the helper processes the tests start from this binary.
const (
	envRole     = "ETCDLOCK_TEST_ROLE"
	envEndpoint = "ETCDLOCK_TEST_ENDPOINT"
	envKey      = "ETCDLOCK_TEST_KEY"
	envDir      = "ETCDLOCK_TEST_DIR"
	envRounds   = "ETCDLOCK_TEST_ROUNDS"
)

// etcdEndpoint is the client address of the single-member etcd that
// TestMain starts for the tests and the example.
var etcdEndpoint string

func TestMain(m *testing.M) {
	if os.Getenv(envRole) != "" { // a helper process: TestHelperProcess runs alone
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "etcdlock-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	members, err := startCluster(dir, 1, 50)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting etcd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	etcdEndpoint = members[0].Config().ListenClientUrls[0].Host
	code := m.Run()
	members[0].Close()
	os.RemoveAll(dir)
	if buildDir != "" { // dlockrun_test.go
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startCluster starts n etcd members in this process, on 127.0.0.1 ports
// picked now, with data under dir, and waits until they serve.
func startCluster(dir string, n int, tickMs uint) ([]*embed.Etcd, error) {
	type ports struct{ client, peer url.URL }
	var ps []ports
	var initial []string
	for i := range n {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		p := ports{
			client: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cp)},
			peer:   url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pp)},
		}
		ps = append(ps, p)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, p.peer.String()))
	}
	var members []*embed.Etcd
	closeAll := func() {
		for _, e := range members {
			e.Close()
		}
	}
	for i, p := range ps {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenClientUrls = []url.URL{p.client}
		cfg.AdvertiseClientUrls = []url.URL{p.client}
		cfg.ListenPeerUrls = []url.URL{p.peer}
		cfg.AdvertisePeerUrls = []url.URL{p.peer}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "etcdlock-test"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.TickMs = tickMs
		cfg.ElectionMs = 10 * tickMs
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true // test data: speed over durability
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			closeAll()
			return nil, err
		}
		members = append(members, e)
	}
	for _, e := range members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			closeAll()
			return nil, err
		case <-time.After(60 * time.Second):
			closeAll()
			return nil, errors.New("etcd did not become ready within 60s")
		}
	}
	return members, nil
}

func newClient(t testing.TB, endpoints []string, dialOpts ...grpc.DialOption) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: dialOpts,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newLock(t testing.TB, c *clientv3.Client, key string, opts ...etcdlock.Option) *etcdlock.Lock {
	t.Helper()
	l, err := etcdlock.New(c, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func entries(t testing.TB, c *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Get(ctx, key+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return r.Count
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestHelperProcess is not a test: it is what the helper processes of the
// other tests run.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		t.Skip("helper process only")
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{os.Getenv(envEndpoint)}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	key, dir := os.Getenv(envKey), os.Getenv(envDir)
	switch role {
	case "counter":
		err = counter(c, key, dir)
	case "hold":
		err = hold(c, key)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// counter increments the number in dir/counter, a non-atomic read-modify-
// write, under the lock; dir/inside shows overlaps and dir/fences records
// the fence of each round.
func counter(c *clientv3.Client, key, dir string) error {
	rounds, err := strconv.Atoi(os.Getenv(envRounds))
	if err != nil {
		return err
	}
	l, err := etcdlock.New(c, key, etcdlock.WithTimeout(5*time.Second))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for range rounds {
		err := l.Do(ctx, func(ctx context.Context) error {
			inside := filepath.Join(dir, "inside")
			f, err := os.OpenFile(inside, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("two holders at once: %w", err)
			}
			f.Close()
			b, err := os.ReadFile(filepath.Join(dir, "counter"))
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return err
			}
			time.Sleep(time.Millisecond) // widen the window a second holder would hit
			if err := os.WriteFile(filepath.Join(dir, "counter"), []byte(strconv.Itoa(n+1)), 0o644); err != nil {
				return err
			}
			fences, err := os.OpenFile(filepath.Join(dir, "fences"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			fmt.Fprintln(fences, l.Fence())
			if err := fences.Close(); err != nil {
				return err
			}
			return os.Remove(inside)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// hold takes the lock, says so on stdout and keeps it until stdin closes
// (or a minute passes).
func hold(c *clientv3.Client, key string) error {
	l, err := etcdlock.New(c, key, etcdlock.WithTimeout(2*time.Second))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Lock(ctx); err != nil {
		return err
	}
	fmt.Printf("HELD %d\n", l.Fence())
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
	return l.Unlock()
}

func helper(t *testing.T, role, key, dir string, extra ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envRole+"="+role, envEndpoint+"="+etcdEndpoint, envKey+"="+key, envDir+"="+dir)
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestMutualExclusionAcrossProcesses(t *testing.T) {
	const procs, rounds = 4, 20
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "counter"), []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := "/test/" + t.Name()
	var cmds []*exec.Cmd
	for range procs {
		cmd := helper(t, "counter", key, dir, envRounds+"="+strconv.Itoa(rounds))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v", i, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(procs*rounds) {
		t.Errorf("counter = %s, want %d", got, procs*rounds)
	}
	b, err = os.ReadFile(filepath.Join(dir, "fences"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	if len(lines) != procs*rounds {
		t.Errorf("%d fences recorded, want %d", len(lines), procs*rounds)
	}
	var last uint64
	for i, s := range lines {
		f, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if f <= last {
			t.Errorf("fence %d of round %d is not above the previous %d", f, i, last)
		}
		last = f
	}
	if n := entries(t, newClient(t, []string{etcdEndpoint}), key); n != 0 {
		t.Errorf("%d entries left under the key, want 0", n)
	}
}

func TestKilledHolderFreesAfterTTL(t *testing.T) {
	key := "/test/" + t.Name()
	cmd := helper(t, "hold", key, "")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	var heldFence uint64
	select {
	case s := <-line:
		if _, err := fmt.Sscanf(s, "HELD %d", &heldFence); err != nil {
			t.Fatalf("helper said %q: %v", s, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("helper did not take the lock within 60s")
	}

	c := newClient(t, []string{etcdEndpoint})
	l := newLock(t, c, key, etcdlock.WithPatience(20*time.Second))
	if ok, err := l.TryLock(); ok || err != nil {
		t.Fatalf("TryLock while the helper holds = %v, %v; want false, nil", ok, err)
	}
	h, held, err := etcdlock.Inspect(context.Background(), c, key)
	if err != nil || !held || h.PID != cmd.Process.Pid || h.Fence != heldFence {
		t.Fatalf("Inspect = %+v, %v, %v; want the helper pid %d, fence %d", h, held, err, cmd.Process.Pid, heldFence)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	ok, err := l.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Fatalf("acquired %s after SIGKILL, before the holder's lease (TTL 2s) could expire", time.Since(killed))
	}
	if err := l.Lock(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	t.Logf("acquired %s after SIGKILL of the holder (TTL 2s)", took.Round(time.Millisecond))
	if took > 6*time.Second {
		t.Errorf("took %s to take over from a killed holder with TTL 2s", took)
	}
	if l.Fence() <= heldFence {
		t.Errorf("fence %d not above the killed holder's %d", l.Fence(), heldFence)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// proxy forwards TCP connections to target until cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		d, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, d)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(c, d)
		go pipe(d, c)
	}
}

// setCut closes all forwarded connections and refuses new ones (true), or
// forwards again (false).
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

func TestCutConnectionLosesLock(t *testing.T) {
	key := "/test/" + t.Name()
	p := newProxy(t, etcdEndpoint)
	fast := grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond},
		MinConnectTimeout: time.Second,
	})
	cutClient := newClient(t, []string{p.addr()}, fast)
	c := newClient(t, []string{etcdEndpoint})

	a := newLock(t, cutClient, key, etcdlock.WithTimeout(2*time.Second))
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	b := newLock(t, c, key)
	bErr := make(chan error, 1)
	go func() { bErr <- b.Lock(ctxT(t, 30*time.Second)) }()
	waitFor(t, 10*time.Second, "b to queue", func() bool { return entries(t, c, key) == 2 })

	p.setCut(true)
	cut := time.Now()
	select {
	case <-a.Lost():
		t.Logf("Lost fired %s after the cut", time.Since(cut).Round(time.Millisecond))
	case err := <-bErr:
		t.Fatalf("b acquired (%v) before a noticed its loss", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Lost did not fire within 10s of cutting the connection")
	}
	select {
	case err := <-bErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b did not take over within 15s")
	}
	if b.Fence() <= a.Fence() {
		t.Errorf("fence %d of the successor not above %d", b.Fence(), a.Fence())
	}

	// Reconnect, so that the late Unlock really asks etcd.
	p.setCut(false)
	waitFor(t, 15*time.Second, "the cut client to reconnect", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := cutClient.Get(ctx, "probe")
		return err == nil
	})
	err := a.Unlock()
	if !errors.Is(err, dlock.ErrLost) {
		t.Fatalf("late Unlock = %v, want ErrLost", err)
	}
	t.Logf("late Unlock: %v", err)
	if !strings.Contains(err.Error(), key) {
		t.Errorf("error %q does not name the key", err)
	}
	h, held, err := etcdlock.Inspect(context.Background(), c, key)
	if err != nil || !held || h.Fence != b.Fence() {
		t.Fatalf("after the late Unlock Inspect = %+v, %v, %v; want the successor (fence %d)", h, held, err, b.Fence())
	}
	if isClosed(b.Lost()) {
		t.Fatal("the late Unlock made the successor lose the lock")
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestDeletedKeyLateUnlock(t *testing.T) {
	key := "/test/" + t.Name()
	c := newClient(t, []string{etcdEndpoint})
	var logs lockedBuffer
	a := newLock(t, c, key, etcdlock.WithTimeout(2*time.Second),
		etcdlock.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	h, _, err := etcdlock.Inspect(context.Background(), c, key)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := strconv.ParseInt(h.Token, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(context.Background(), clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost did not fire within 10s of revoking the lease")
	}
	if l := logs.String(); !strings.Contains(l, "lock acquired") || !strings.Contains(l, "lock lost") || !strings.Contains(l, key) {
		t.Errorf("log does not tell of the acquisition and the loss:\n%s", l)
	}
	b := newLock(t, c, key, etcdlock.WithPatience(0))
	if err := b.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(ctxT(t, 10*time.Second)); !errors.Is(err, dlock.ErrHeld) {
		t.Errorf("Lock after loss without Unlock = %v, want ErrHeld", err)
	}
	if err := a.Unlock(); !errors.Is(err, dlock.ErrLost) {
		t.Fatalf("late Unlock = %v, want ErrLost", err)
	}
	if h, held, _ := etcdlock.Inspect(context.Background(), c, key); !held || h.Fence != b.Fence() {
		t.Fatalf("after the late Unlock the holder is %+v (held %v), want fence %d", h, held, b.Fence())
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
	// a can lock again after its Unlock.
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestClosedClient: closing the client loses the lock, and Lock on a
// closed client fails at once rather than retrying for ever.
func TestClosedClient(t *testing.T) {
	key := "/test/" + t.Name()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdEndpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	l := newLock(t, c, key, etcdlock.WithTimeout(2*time.Second))
	if err := l.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost did not fire within 10s of closing the client")
	}
	if err := l.Unlock(); !errors.Is(err, dlock.ErrLost) {
		t.Errorf("Unlock after closing the client = %v, want ErrLost", err)
	}
	start := time.Now()
	if err := l.Lock(context.Background()); err == nil {
		t.Fatal("Lock on a closed client succeeded")
	} else {
		t.Logf("Lock on a closed client: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Lock on a closed client took %s", d)
	}
	// The lease was not revoked (the client was gone): it expires.
	other := newLock(t, newClient(t, []string{etcdEndpoint}), key)
	if err := other.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := other.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestPatience(t *testing.T) {
	key := "/test/" + t.Name()
	c := newClient(t, []string{etcdEndpoint})
	a := newLock(t, c, key)
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, patience := range []time.Duration{0, 300 * time.Millisecond} {
		b := newLock(t, c, key, etcdlock.WithPatience(patience))
		start := time.Now()
		err := b.Lock(ctxT(t, 10*time.Second))
		took := time.Since(start)
		var busy *dlock.BusyError
		if !errors.Is(err, dlock.ErrBusy) || !errors.As(err, &busy) {
			t.Fatalf("patience %s: Lock = %v, want a *dlock.BusyError", patience, err)
		}
		t.Logf("patience %s: %v", patience, err)
		if took < patience || busy.Waited < patience {
			t.Errorf("patience %s: gave up after %s (Waited %s)", patience, took, busy.Waited)
		}
		if busy.Holder.PID != os.Getpid() || busy.Holder.Fence != a.Fence() || busy.Path != key {
			t.Errorf("patience %s: busy error names %+v at %q, want pid %d, fence %d at %q",
				patience, busy.Holder, busy.Path, os.Getpid(), a.Fence(), key)
		}
		if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
			t.Errorf("error %q does not name the key and holder", err)
		}
		if n := entries(t, c, key); n != 1 {
			t.Errorf("patience %s: %d entries after giving up, want 1", patience, n)
		}
	}
	b := newLock(t, c, key)
	if ok, err := b.TryLock(); ok || err != nil {
		t.Errorf("TryLock = %v, %v; want false, nil", ok, err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock on a free lock = %v, %v", ok, err)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestContextCancel(t *testing.T) {
	key := "/test/" + t.Name()
	c := newClient(t, []string{etcdEndpoint})
	a := newLock(t, c, key)
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	b := newLock(t, c, key) // no patience limit: ctx bounds it
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Lock(ctx) }()
	waitFor(t, 10*time.Second, "b to queue", func() bool { return entries(t, c, key) == 2 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || errors.Is(err, dlock.ErrBusy) {
			t.Fatalf("Lock after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock did not return within 10s of cancel")
	}
	if n := entries(t, c, key); n != 1 {
		t.Errorf("%d entries after the cancelled Lock, want 1", n)
	}
	err := b.Lock(ctxT(t, 200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with a 200ms deadline = %v, want DeadlineExceeded", err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestHeldAndNotHeld(t *testing.T) {
	key := "/test/" + t.Name()
	c := newClient(t, []string{etcdEndpoint})
	a := newLock(t, c, key)
	if err := a.Unlock(); !errors.Is(err, dlock.ErrNotHeld) {
		t.Errorf("Unlock of a fresh Lock = %v, want ErrNotHeld", err)
	}
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(ctxT(t, 10*time.Second)); !errors.Is(err, dlock.ErrHeld) {
		t.Errorf("second Lock = %v, want ErrHeld", err)
	}
	if ok, err := a.TryLock(); ok || !errors.Is(err, dlock.ErrHeld) {
		t.Errorf("TryLock while held = %v, %v; want ErrHeld", ok, err)
	}
	// A Lock that is waiting refuses a second acquisition too.
	b := newLock(t, c, key)
	errc := make(chan error, 1)
	go func() { errc <- b.Lock(ctxT(t, 30*time.Second)) }()
	waitFor(t, 10*time.Second, "b to queue", func() bool { return entries(t, c, key) == 2 })
	if ok, err := b.TryLock(); ok || !errors.Is(err, dlock.ErrHeld) {
		t.Errorf("TryLock while acquiring = %v, %v; want ErrHeld", ok, err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(); !errors.Is(err, dlock.ErrNotHeld) {
		t.Errorf("second Unlock = %v, want ErrNotHeld", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if isClosed(a.Lost()) {
		t.Error("Unlock closed Lost")
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestQueueAndFences: waiters acquire in order, one release waking one
// waiter, and fences rise strictly.
func TestQueueAndFences(t *testing.T) {
	key := "/test/" + t.Name()
	c := newClient(t, []string{etcdEndpoint})
	locks := make([]*etcdlock.Lock, 4)
	for i := range locks {
		locks[i] = newLock(t, c, key)
	}
	if err := locks[0].Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	acquired := make(chan int, len(locks))
	for i := 1; i < len(locks); i++ {
		go func() {
			if err := locks[i].Lock(ctxT(t, 30*time.Second)); err != nil {
				t.Error(err)
			}
			acquired <- i
		}()
		waitFor(t, 10*time.Second, fmt.Sprintf("waiter %d to queue", i), func() bool { return entries(t, c, key) == int64(i+1) })
	}
	for i := 1; i < len(locks); i++ {
		if err := locks[i-1].Unlock(); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-acquired:
			if got != i {
				t.Fatalf("waiter %d acquired after release %d, want waiter %d", got, i-1, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("waiter %d did not acquire within 10s", i)
		}
		if h, _, _ := etcdlock.Inspect(context.Background(), c, key); h.Fence != locks[i].Fence() {
			t.Errorf("Inspect names fence %d, want %d", h.Fence, locks[i].Fence())
		}
		if locks[i].Fence() <= locks[i-1].Fence() {
			t.Errorf("fence %d of waiter %d not above %d", locks[i].Fence(), i, locks[i-1].Fence())
		}
	}
	last := locks[len(locks)-1].Fence()
	if err := locks[len(locks)-1].Unlock(); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		l := locks[i%2]
		if ok, err := l.TryLock(); !ok || err != nil {
			t.Fatalf("TryLock = %v, %v", ok, err)
		}
		if l.Fence() <= last {
			t.Errorf("fence %d not above %d", l.Fence(), last)
		}
		last = l.Fence()
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	if _, held, _ := etcdlock.Inspect(context.Background(), c, key); held {
		t.Error("Inspect reports a holder after all released")
	}
}

// TestConcurrencyMutexExcludes: the key layout is concurrency.Mutex's.
func TestConcurrencyMutexExcludes(t *testing.T) {
	key := "/test/" + t.Name()
	c := newClient(t, []string{etcdEndpoint})
	s, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := concurrency.NewMutex(s, key)
	if err := m.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	l := newLock(t, c, key)
	if ok, err := l.TryLock(); ok || err != nil {
		t.Fatalf("TryLock while a concurrency.Mutex holds = %v, %v", ok, err)
	}
	if h, held, err := etcdlock.Inspect(context.Background(), c, key); err != nil || !held || !h.Unknown {
		t.Errorf("Inspect = %+v, %v, %v; want an unknown holder", h, held, err)
	}
	if err := m.Unlock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := l.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctxT(t, 10*time.Second)); !errors.Is(err, concurrency.ErrLocked) {
		t.Errorf("concurrency.Mutex TryLock while we hold = %v, want ErrLocked", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestDo(t *testing.T) {
	key := "/test/" + t.Name()
	c := newClient(t, []string{etcdEndpoint})
	l := newLock(t, c, key)
	ran := false
	err := l.Do(ctxT(t, 10*time.Second), func(ctx context.Context) error {
		ran = true
		if _, held, _ := etcdlock.Inspect(ctx, c, key); !held {
			t.Error("not held inside Do")
		}
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("Do = %v (ran %v)", err, ran)
	}
	if _, held, _ := etcdlock.Inspect(context.Background(), c, key); held {
		t.Error("still held after Do")
	}
}

// TestLeaderLoss: a three-member cluster loses its leader (it stops
// without handing over, its clients cut off) while the lock is held and
// contended; there is never a second holder and the lock stays usable.
func TestLeaderLoss(t *testing.T) {
	members, err := startCluster(t.TempDir(), 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	var proxies []*proxy
	var endpoints []string
	for _, m := range members {
		p := newProxy(t, m.Config().ListenClientUrls[0].Host)
		proxies = append(proxies, p)
		endpoints = append(endpoints, p.addr())
	}
	leader := -1
	t.Cleanup(func() {
		for i, m := range members {
			if i != leader {
				m.Close()
			}
		}
	})
	key := "/test/" + t.Name()

	var inside, maxInside, rounds atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		c := newClient(t, endpoints)
		l := newLock(t, c, key, etcdlock.WithTimeout(5*time.Second))
		wg.Go(func() {
			for i := 0; i < 10000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := l.Do(ctx, func(ctx context.Context) error {
					n := inside.Add(1)
					defer inside.Add(-1)
					for {
						m := maxInside.Load()
						if n <= m || maxInside.CompareAndSwap(m, n) {
							break
						}
					}
					rounds.Add(1)
					select {
					case <-time.After(20 * time.Millisecond):
					case <-ctx.Done():
					}
					return nil
				})
				cancel()
				if err != nil {
					t.Logf("worker %d: %v", w, err) // tolerated while the leader changes
				}
			}
		})
	}
	waitFor(t, 20*time.Second, "some rounds before the leader stops", func() bool { return rounds.Load() >= 10 })

	for i, m := range members {
		if m.Server.Leader() == m.Server.MemberID() {
			leader = i
		}
	}
	if leader < 0 {
		close(stop)
		wg.Wait()
		t.Fatal("no leader")
	}
	before := rounds.Load()
	// A crash: its clients lose their connections, raft stops at once.
	proxies[leader].setCut(true)
	members[leader].Server.HardStop()
	closed := make(chan struct{})
	go func() { members[leader].Close(); close(closed) }()
	t.Cleanup(func() { <-closed })
	t.Logf("stopped leader m%d after %d rounds", leader, before)
	waitFor(t, 30*time.Second, "rounds under the new leader", func() bool { return rounds.Load() >= before+20 })
	close(stop)
	wg.Wait()
	if m := maxInside.Load(); m != 1 {
		t.Fatalf("%d holders at once", m)
	}
	t.Logf("%d rounds in all", rounds.Load())

	var live []string
	for i, e := range endpoints {
		if i != leader {
			live = append(live, e)
		}
	}
	c := newClient(t, live)
	l := newLock(t, c, key, etcdlock.WithPatience(15*time.Second))
	if err := l.Lock(ctxT(t, 20*time.Second)); err != nil {
		t.Fatalf("lock after the leader change: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}
