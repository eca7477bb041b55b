package main

// NFS in -alternatives: two qemu guests of scripts/qemu-nfs.sh, each its
// own Linux NFS client of one nfs-ganesha export on this host, each
// running this binary as an agent (guest.go) that starts the Go peers
// and runs the uncontended loops there. One boot of the two guests serves
// both filesystems of the table: each guest mounts the export twice,
// /m1 with the kernel's default options (nfs-default) and /m2 with
// actimeo=0 (nfs-actimeo0), each mount its own superblock and caches.
//
// Every answer of a guest is stamped with this host's CLOCK_MONOTONIC as
// it arrives, so a hand-off from a holder in guest 1 to a waiter in
// guest 2 is timed on one clock: from the moment the holder's agent
// passed "unlock" to its peer to the moment the waiter's "acquired"
// arrived here (both lines cross the same kind of link, guest to host).
// Server operations are the RPCs the guests' NFS clients sent for the
// mount (/proc/self/mountstats), each one round trip to the server.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// nfsFS are the NFS filesystems of the table and the guests' mount of each.
var nfsFS = map[string]struct {
	mount int    // /mN in each guest
	opts  string // the mount's options, as qemu-nfs.sh's DLOCK_NFS_MOUNTS takes them
}{
	"nfs-default":  {1, "default"},
	"nfs-actimeo0": {2, "actimeo=0,nosharecache"},
}

// The implementations measured on NFS: the Go ones (the guests carry no
// Python or Node).
var (
	nfsUnc     = []string{implDlock, implDlockRun, implFlock, implFloorChecked, implFloorMkdir}
	nfsHandoff = []string{implDlock, implDlockPoll, implDlockRun, implFlock}
	nfsWait    = []string{implDlock, implDlockPoll, implDlock5, implFlock}
	nfsOps     = []string{implDlock, implDlock5, implFlock}
	nfsTuned   = []string{implDlock, implDlockRun, implFlock}
)

// nfsRig is the qemu rig and its two guests, booted once per run.
type nfsRig struct {
	state, export, port string
	guests              [2]*guestConn
	ln                  net.Listener
	down                func()
	kernel              string
	closeOnce           sync.Once
}

// activeNFS is the rig whose guests serve the paths "nfs:gN:/..." (one
// rig per run).
var activeNFS *nfsRig

// guestPath splits "nfs:gN:PATH" into the guest and the path in it.
func guestPath(p string) (*guestConn, string, bool) {
	rest, ok := strings.CutPrefix(p, "nfs:g")
	if !ok || activeNFS == nil || len(rest) < 3 || rest[1] != ':' {
		return nil, "", false
	}
	i := int(rest[0] - '1')
	if i < 0 || i > 1 {
		return nil, "", false
	}
	return activeNFS.guests[i], rest[2:], true
}

// hostView is where this host sees a path of the tables (a guest's
// "nfs:gN:/mK/REST" is the export's REST); other paths are themselves.
func hostView(p string) string {
	_, gp, ok := guestPath(p)
	if !ok {
		return p
	}
	parts := strings.SplitN(strings.TrimPrefix(gp, "/"), "/", 2)
	if len(parts) < 2 {
		return activeNFS.export
	}
	return filepath.Join(activeNFS.export, parts[1])
}

// nfsUp brings up the qemu rig (or finds it: DLOCK_QEMU_STATE of a rig
// that `scripts/qemu-nfs.sh up` started, as CI's), builds this bench and
// the dlock CLI for the guests, and boots the two guests.
func nfsUp(cfg altConfig, prog func(string, ...any)) (*nfsRig, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the qemu NFS rig needs root (it installs qemu and nfs-ganesha and runs an NFS server)")
	}
	script := filepath.Join(cfg.repo, "scripts", "qemu-nfs.sh")
	r := &nfsRig{down: func() {}}
	state := os.Getenv("DLOCK_QEMU_STATE")
	if state != "" && exec.Command("bash", script, "status", state).Run() == nil {
		prog("nfs: using the qemu rig in $DLOCK_QEMU_STATE")
		r.port = os.Getenv("DLOCK_QEMU_NFS_PORT")
	} else {
		state = cfg.rigState + "-nfs"
		prog("nfs: bringing up the qemu rig (scripts/qemu-nfs.sh up)")
		cmd := exec.Command("bash", script, "up", state)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		var once sync.Once
		r.down = func() { once.Do(func() { rigDown(script, state) }) }
		if err != nil {
			r.down()
			return nil, fmt.Errorf("qemu-nfs.sh up: %w", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "export DLOCK_QEMU_NFS_PORT="); ok {
				r.port = strings.Trim(v, `'"`)
			}
		}
	}
	if r.port == "" {
		r.port = "20490"
	}
	r.state, r.export = state, filepath.Join(state, "export")
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, errors.New("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86): the NFS clients are qemu guests (software emulation; KVM is not needed)")
	}
	k, _ := os.ReadFile(filepath.Join(state, "kernel.version"))
	r.kernel = strings.TrimSpace(string(k))
	initrd, err := nfsInitrd(cfg, state)
	if err != nil {
		return nil, err
	}
	if r.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	hellos := make(chan *guestConn, 2)
	go func() {
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				rd := bufio.NewReader(c)
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				hello, err := rd.ReadString('\n')
				f := strings.Fields(hello)
				if err != nil || len(f) != 3 || f[1] != "hello" {
					c.Close()
					return
				}
				c.SetReadDeadline(time.Time{})
				hellos <- newGuestConn(f[2], c, rd)
			}()
		}
	}()
	var mounts []string
	for _, name := range []string{"nfs-default", "nfs-actimeo0"} {
		mounts = append(mounts, nfsFS[name].opts)
	}
	t0 := time.Now()
	var qemus []*exec.Cmd
	var exited []chan struct{}
	prevDown := r.down
	var mu sync.Mutex // guards qemus and exited against r.down
	boot := func(i int) error {
		cmd, done, err := r.boot(fmt.Sprintf("g%d", i+1), i+2, initrd, mounts)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if i < len(qemus) {
			qemus[i], exited[i] = cmd, done
		} else {
			qemus, exited = append(qemus, cmd), append(exited, done)
		}
		return nil
	}
	r.down = func() {
		mu.Lock()
		defer mu.Unlock()
		for i, c := range qemus {
			c.Process.Kill()
			<-exited[i]
		}
		prevDown()
	}
	for i := range 2 {
		if err := boot(i); err != nil {
			return nil, err
		}
	}
	limit := time.After(5 * time.Minute)
	boots := [2]int{1, 1}
	for r.guests[0] == nil || r.guests[1] == nil {
		mu.Lock()
		ex := slices.Clone(exited)
		mu.Unlock()
		select {
		case g := <-hellos:
			if g.name != "g1" && g.name != "g2" {
				return nil, fmt.Errorf("a guest called %q", g.name)
			}
			r.guests[g.name[1]-'1'] = g
		case <-ex[0]:
		case <-ex[1]:
		case <-limit:
			return nil, fmt.Errorf("the guests' agents did not call within 5 minutes (consoles: %s/run/dlockbench-g*.console)", state)
		}
		// A guest that stopped before its agent called (a kernel that
		// panicked at boot, on a loaded machine) boots again, twice at most.
		for i := range 2 {
			select {
			case <-ex[i]:
				if r.guests[i] != nil {
					return nil, fmt.Errorf("guest g%d stopped (console: %s/run/dlockbench-g%d.console)", i+1, state, i+1)
				}
				if boots[i] == 3 {
					return nil, fmt.Errorf("guest g%d stopped before its agent called, %d times (console: %s/run/dlockbench-g%d.console)", i+1, boots[i], state, i+1)
				}
				prog("nfs: guest g%d stopped before its agent called; booting it again", i+1)
				boots[i]++
				if err := boot(i); err != nil {
					return nil, err
				}
			default:
			}
		}
	}
	for _, g := range r.guests {
		// One wall clock for the guests and the host (a guest runs no
		// NTP): dlock's skew warnings then mean a fault.
		if _, err := g.request("clock", time.Minute, strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
			return nil, err
		}
		if err := g.syncMono(); err != nil {
			return nil, err
		}
	}
	prog("nfs: two guests up in %v (kernel %s, NFS on 127.0.0.1:%s)", time.Since(t0).Round(time.Second), r.kernel, r.port)
	activeNFS = r
	ok = true
	return r, nil
}

// versions are the NFS rig's: the server, qemu, the guests' kernel.
func (r *nfsRig) versions() []string {
	var v []string
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "nfs-ganesha").Output(); err == nil {
		v = append(v, "nfs-ganesha "+strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("qemu-system-x86_64", "--version").Output(); err == nil {
		line, _, _ := strings.Cut(string(out), "\n")
		v = append(v, "qemu "+strings.TrimPrefix(strings.TrimSpace(line), "QEMU emulator version "))
	}
	return append(v, "the guests' Linux "+r.kernel)
}

// close stops the guests (and the rig, if this run started it).
func (r *nfsRig) close() { r.closeOnce.Do(r.doClose) }

func (r *nfsRig) doClose() {
	if r.ln != nil {
		r.ln.Close()
	}
	for _, g := range r.guests {
		if g != nil {
			g.conn.Close()
		}
	}
	r.down()
	if activeNFS == r {
		activeNFS = nil
	}
}

// nfsInitrd is the rig's initramfs with this bench and the dlock CLI
// added (static builds, in an archive appended to it: the kernel unpacks
// one after the other, later files over earlier ones).
func nfsInitrd(cfg altConfig, state string) (string, error) {
	dir := filepath.Join(state, "dlockbench")
	root := filepath.Join(dir, "root")
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		return "", err
	}
	for _, b := range []struct{ dir, pkg, out string }{{".", ".", "dlockbench"}, {cfg.repo, "./cmd/dlock", "dlock"}} {
		c := exec.Command("go", "build", "-o", filepath.Join(root, "bin", b.out), b.pkg)
		c.Dir = b.dir
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building %s for the guests: %v: %s", b.pkg, err, out)
		}
	}
	extra := filepath.Join(dir, "extra.cpio.gz")
	c := exec.Command("sh", "-c", `cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 >"$2"`, "sh", root, extra)
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("packing the bench for the guests: %v: %s", err, out)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	c = exec.Command("sh", "-c", `cat "$1" "$2" >"$3"`, "sh", filepath.Join(state, "initrd.gz"), extra, initrd)
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return initrd, nil
}

// boot starts a guest named name on the user-mode network 10.0.NET.0/24
// (this host's loopback is 10.0.NET.2 there), mounting the export once
// per entry of mounts, running this bench's agent.
func (r *nfsRig) boot(name string, netN int, initrd string, mounts []string) (*exec.Cmd, chan struct{}, error) {
	run := filepath.Join(r.state, "run")
	os.MkdirAll(run, 0o755)
	port := r.ln.Addr().(*net.TCPAddr).Port
	// no_timer_check: on a loaded host the emulated IO-APIC timer can
	// miss the kernel's boot-time check, which then panics.
	cmdline := []string{"console=ttyS0", "panic=-1", "quiet", "loglevel=4", "no_timer_check",
		"DLOCK_NFS_PORT=" + r.port, "DLOCK_GUEST_NAME=" + name, fmt.Sprintf("DLOCK_GUEST_NET=10.0.%d", netN),
		"DLOCK_QEMU_PROG=/bin/dlockbench", fmt.Sprintf("%s=10.0.%d.2:%d", guestCtlEnv, netN, port),
		"DLOCK_NFS_MOUNTS=" + strings.Join(mounts, "/")}
	// Pid files under run/: qemu-nfs.sh down stops what is left.
	cmd := exec.Command("qemu-system-x86_64", "-m", "1024", "-smp", "2", "-display", "none", "-no-reboot",
		"-serial", "file:"+filepath.Join(run, "dlockbench-"+name+".console"), "-monitor", "none",
		"-pidfile", filepath.Join(run, "dlockbench-"+name+".pid"),
		"-kernel", filepath.Join(r.state, "vmlinuz"), "-initrd", initrd,
		"-append", strings.Join(cmdline, " "),
		"-netdev", fmt.Sprintf("user,id=n0,net=10.0.%d.0/24", netN), "-device", "virtio-net-pci,netdev=n0")
	out, err := os.Create(filepath.Join(run, "dlockbench-"+name+".qemu.log"))
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	// The guests end with the bench, even one stopped by ^C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("starting qemu: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	return cmd, done, nil
}

// mountLine is the caching options of guest 2's mount /mN as its kernel
// shows them (the "mount" lines /init prints on the console).
func (r *nfsRig) mountLine(n int) string {
	b, _ := os.ReadFile(filepath.Join(r.state, "run", "dlockbench-g2.console"))
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, "dlock-qemu: mount "); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[0] == fmt.Sprintf("/m%d", n) {
				var keep []string
				for _, o := range strings.Split(f[1], ",") {
					if strings.HasPrefix(o, "vers=") || strings.HasPrefix(o, "ac") || o == "noac" || strings.HasPrefix(o, "lookupcache") || o == "nosharecache" || strings.HasPrefix(o, "local_lock") {
						keep = append(keep, o)
					}
				}
				return strings.Join(keep, ",")
			}
		}
	}
	return "?"
}

// --- the control connection ---------------------------------------------

// gline is one answer of a guest's agent, stamped here as it arrived.
type gline struct {
	at       int64 // CLOCK_MONOTONIC of this host
	ev, rest string
}

// guestConn is the control connection of one guest's agent.
type guestConn struct {
	name   string
	conn   net.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	subs   map[string]chan gline
	seq    int
	closed bool
	offset int64 // this host's CLOCK_MONOTONIC minus the guest's
	synced int64 // when offset was measured (this host's clock)
}

func newGuestConn(name string, c net.Conn, rd *bufio.Reader) *guestConn {
	g := &guestConn{name: name, conn: c, subs: map[string]chan gline{}}
	go func() {
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			at := mono()
			id, rest, _ := strings.Cut(sc.Text(), " ")
			ev, rest, _ := strings.Cut(rest, " ")
			g.mu.Lock()
			ch := g.subs[id]
			g.mu.Unlock()
			if ch != nil {
				ch <- gline{at, ev, rest}
			}
		}
		g.mu.Lock()
		g.closed = true
		for id, ch := range g.subs {
			close(ch)
			delete(g.subs, id)
		}
		g.mu.Unlock()
	}()
	return g
}

// send gives the agent a command; its answers come on the channel until
// unsub.
func (g *guestConn) send(verb string, args ...string) (string, chan gline, error) {
	g.mu.Lock()
	g.seq++
	id := fmt.Sprintf("c%d", g.seq)
	ch := make(chan gline, 1024)
	if g.closed {
		g.mu.Unlock()
		return "", nil, fmt.Errorf("guest %s: control connection closed", g.name)
	}
	g.subs[id] = ch
	g.mu.Unlock()
	return id, ch, g.write(strings.Join(append([]string{id, verb}, args...), " "))
}

func (g *guestConn) write(line string) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := io.WriteString(g.conn, line+"\n")
	if err != nil {
		return fmt.Errorf("guest %s: %v", g.name, err)
	}
	return nil
}

func (g *guestConn) unsub(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.subs, id)
}

// request sends a command and waits up to limit for its answer.
func (g *guestConn) request(verb string, limit time.Duration, args ...string) (gline, error) {
	id, ch, err := g.send(verb, args...)
	if err != nil {
		return gline{}, err
	}
	defer g.unsub(id)
	select {
	case l, ok := <-ch:
		switch {
		case !ok:
			return gline{}, fmt.Errorf("guest %s: control connection closed", g.name)
		case l.ev == "error":
			return l, fmt.Errorf("guest %s: %s: %s", g.name, verb, l.rest)
		}
		return l, nil
	case <-time.After(limit):
		return gline{}, fmt.Errorf("guest %s: no answer to %s within %v", g.name, verb, limit)
	}
}

// syncMono measures the offset of the guest's CLOCK_MONOTONIC from this
// host's: the quickest of a few round trips, its midpoint.
func (g *guestConn) syncMono() error {
	best := int64(-1)
	for range 5 {
		t0 := mono()
		l, err := g.request("mono", time.Minute)
		if err != nil {
			return err
		}
		gm, _ := strconv.ParseInt(l.rest, 10, 64)
		if rtt := l.at - t0; best < 0 || rtt < best {
			best = rtt
			g.offset = (t0+l.at)/2 - gm
		}
	}
	g.synced = mono()
	return nil
}

// stats is the RPC count of the guest's mount, and when it arrived.
func (g *guestConn) stats(mount string) (rpcCounts, int64, error) {
	l, err := g.request("stats", time.Minute, mount)
	if err != nil {
		return rpcCounts{}, 0, err
	}
	if strings.HasPrefix(l.rest, "error=") {
		return rpcCounts{}, 0, fmt.Errorf("guest %s: stats %s: %s", g.name, mount, l.rest)
	}
	return parseRPCs(l.rest), l.at, nil
}

// --- peers in a guest ----------------------------------------------------

// guestPeer is the guest's side of a peerProc that runs in a guest.
type guestPeer struct {
	g  *guestConn
	id string
	mu sync.Mutex
	// verbs of the commands sent whose answers have not come: to tell
	// which answers carry a CLOCK_MONOTONIC to translate
	verbs []string
	sent  int     // lines sent to the peer
	fwds  []int64 // when each reached it (this host's clock, as the agent said so)
	more  chan struct{}
}

// startPeer starts impl's Go peer on path in the guest.
func (g *guestConn) startPeer(impl, path string, stale time.Duration) (*peerProc, error) {
	if peerLang(impl) != "go" {
		return nil, fmt.Errorf("%s: only the Go peers run in the qemu guests", impl)
	}
	id, ch, err := g.send("peer", impl, stale.String(), path)
	if err != nil {
		return nil, err
	}
	gp := &guestPeer{g: g, id: id, more: make(chan struct{})}
	p := &peerProc{impl: impl, stderr: new(strings.Builder), done: make(chan struct{}), guest: gp}
	pr, pw := io.Pipe()
	p.in = &guestIn{gp}
	p.out = bufio.NewReader(pr)
	go func() {
		defer close(p.done)
		defer g.unsub(id)
		ready := false
		for l := range ch {
			switch l.ev {
			case "out":
				line := l.rest
				if !ready && line == "ready" {
					ready = true
				} else {
					line = gp.translate(line, l.at)
				}
				io.WriteString(pw, line+"\n")
			case "err", "error":
				p.stderr.WriteString(l.rest + "\n")
				if l.ev == "error" {
					pw.CloseWithError(fmt.Errorf("guest %s: %s", g.name, l.rest))
					return
				}
			case "fwd":
				gp.mu.Lock()
				gp.fwds = append(gp.fwds, l.at)
				close(gp.more)
				gp.more = make(chan struct{})
				gp.mu.Unlock()
			case "exited":
				pw.CloseWithError(fmt.Errorf("exited: %s", l.rest))
				return
			}
		}
		pw.CloseWithError(fmt.Errorf("guest %s: control connection closed", g.name))
	}()
	line, err := p.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		p.kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
		return nil, fmt.Errorf("%s peer in guest %s did not start (%q, %v): %s", impl, g.name, line, err, p.stderr.String())
	}
	return p, nil
}

// translate puts an answer's CLOCK_MONOTONIC stamps on this host's clock:
// an acquisition's (lock, try) is when the answer arrived here; a loss or
// a log line's the guest's stamp moved by the guests' offset.
func (gp *guestPeer) translate(line string, at int64) string {
	gp.mu.Lock()
	verb := ""
	if len(gp.verbs) > 0 {
		verb, gp.verbs = gp.verbs[0], gp.verbs[1:]
	}
	gp.mu.Unlock()
	move := func(s string) string {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n == 0 {
			return s
		}
		return strconv.FormatInt(n+gp.g.offset, 10)
	}
	f := strings.SplitN(line, " ", 3)
	switch {
	case (verb == "lock" || verb == "try") && len(f) >= 2 && f[0] == "ok":
		f[1] = strconv.FormatInt(at, 10)
	case verb == "lost" && len(f) == 3 && f[1] == "told":
		t, rest, _ := strings.Cut(f[2], " ")
		f[2] = strings.TrimSpace(move(t) + " " + rest)
	case verb == "log" && len(f) >= 2 && f[0] == "ok":
		events := strings.Split(strings.TrimPrefix(line, "ok "), " | ")
		for i, e := range events {
			t, rest, _ := strings.Cut(e, " ")
			events[i] = move(t) + " " + rest
		}
		return "ok " + strings.Join(events, " | ")
	}
	return strings.Join(f, " ")
}

// fwdAt waits for the n-th line sent (from 0) to reach the peer, and
// says when the agent said so (this host's clock).
func (gp *guestPeer) fwdAt(n int, limit time.Duration) (int64, error) {
	deadline := time.After(limit)
	for {
		gp.mu.Lock()
		if len(gp.fwds) > n {
			at := gp.fwds[n]
			gp.mu.Unlock()
			return at, nil
		}
		more := gp.more
		gp.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			return 0, fmt.Errorf("guest %s: a command did not reach its peer within %v", gp.g.name, limit)
		}
	}
}

func (gp *guestPeer) sentCount() int {
	gp.mu.Lock()
	defer gp.mu.Unlock()
	return gp.sent
}

// guestIn is a guest peer's stdin: each line goes to the agent.
type guestIn struct{ gp *guestPeer }

func (w *guestIn) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		w.gp.mu.Lock()
		w.gp.verbs = append(w.gp.verbs, f[0])
		w.gp.sent++
		w.gp.mu.Unlock()
		if err := w.gp.g.write(w.gp.id + " in " + line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (w *guestIn) Close() error { return w.gp.g.write(w.gp.id + " close") }

// --- the rows --------------------------------------------------------------

// altNFS measures the rows that run in the guests on one NFS filesystem
// (f.Dirs: the same directory through guest 1's and guest 2's mount).
func altNFS(cfg altConfig, f *fsRun, r *nfsRig, prog, note func(string, ...any)) {
	mount := fmt.Sprintf("/m%d", nfsFS[f.Name].mount)
	g1, dir1, _ := guestPath(f.Dirs[0])
	g2, _, _ := guestPath(f.Dirs[1])
	var vers []string
	var links []string
	for _, g := range []*guestConn{g1, g2} {
		if s, _, err := g.stats(mount); err == nil {
			vers = append(vers, s.vers)
		}
		// The control link's round trips: what a stamp here can be off by.
		var rtt []float64
		for range 20 {
			t0 := mono()
			if l, err := g.request("mono", time.Minute); err == nil {
				rtt = append(rtt, float64(l.at-t0)/1e6)
			}
		}
		slices.Sort(rtt)
		// The offset again: how far the guest's clock ran from this
		// host's since the last time.
		was, prev := g.offset, g.synced
		g.syncMono()
		if len(rtt) > 0 {
			links = append(links, fmt.Sprintf("guest %s: round trip min %.2f ms, p50 %.2f ms, max %.2f ms; its clock %+.1f ms off this host's since it was last measured (%.0f s ago)",
				g.name, rtt[0], quantile(rtt, 0.5), rtt[len(rtt)-1], float64(g.offset-was)/1e6, float64(g.synced-prev)/1e9))
		}
	}
	note("the control link (host to agent and back): %s", strings.Join(links, "; "))
	note("the guests' mount %s: %s (%s; guest 2's options: %s); Linux %s NFS clients of nfs-ganesha on this host, qemu software emulation, 2 vCPUs each",
		mount, strings.Join(slices.Compact(vers), ", "), nfsFS[f.Name].opts, r.mountLine(nfsFS[f.Name].mount), r.kernel)
	seq := 0
	path := func(what, impl string) [2]string {
		seq++
		name := fmt.Sprintf("%s-%d-%s", what, seq, impl)
		return [2]string{filepath.Join(f.Dirs[0], name), filepath.Join(f.Dirs[1], name)}
	}

	// Uncontended, in one process in guest 1, with its mount's RPCs.
	if cfg.does("unc") {
		prog("uncontended (guest 1): %d rounds", cfg.uncRounds)
		target := 20 * cfg.uncTarget
		sizes := map[string]int{}
		var impls []string
		for _, impl := range cfg.pick(nfsUnc) {
			d, _, err := guestUnc(g1, impl, dir1, 3, mount, cfg.uncLimit)
			if err != nil {
				note("uncontended %s: %v", impl, err)
				continue
			}
			sizes[impl] = max(5, min(500, int(target/max(d/3, time.Microsecond))))
			impls = append(impls, impl)
		}
		samples := map[string][]float64{}
		rpcs := map[string][2]int{}
		for round := range cfg.uncRounds {
			for _, impl := range rotate(impls, round) {
				d, c, err := guestUnc(g1, impl, dir1, sizes[impl], mount, cfg.uncLimit)
				if err != nil {
					note("uncontended %s: %v", impl, err)
					continue
				}
				samples[impl] = append(samples[impl], float64(d.Nanoseconds())/1e3/float64(sizes[impl]))
				x := rpcs[impl]
				rpcs[impl] = [2]int{x[0] + c.total, x[1] + sizes[impl]}
				if round == 0 {
					prog("  %s: %d in %v: %d RPCs (%s)", impl, sizes[impl], d.Round(time.Microsecond), c.total, c.opsString())
				}
			}
		}
		for impl, v := range samples {
			slices.Sort(v)
			f.set("unc_us", impl, round3(quantile(v, 0.5)))
			if cfg.does("ops") {
				f.set("ops_acq", impl, round3(float64(rpcs[impl][0])/float64(rpcs[impl][1])))
			}
		}
	}

	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "MUTUAL EXCLUSION BROKEN") {
			impl, _, _ := strings.Cut(msg, ",")
			f.Viol[impl] = true
		}
		note("%s", msg)
	}
	handoffs, window := 30, 60*time.Second
	if cfg.quick {
		handoffs, window = 12, 30*time.Second
	}
	// Hand-off across the two clients: the holder in one guest holds 1 ms
	// after the other's Lock has begun; the roles alternate.
	hs := map[string][2][]float64{}
	for round := range cfg.rounds {
		for _, impl := range rotate(cfg.pick(nfsHandoff), round) {
			if !cfg.does("handoff") {
				break
			}
			prog("round %d/%d: hand-off across the guests, %s", round+1, cfg.rounds, impl)
			lat, err := nfsBaton(impl, path("handoff", impl), time.Millisecond, 0, handoffs, window, warn)
			if len(lat) == 0 {
				note("hand-off %s: no hand-off (%v)", impl, err)
				continue
			}
			if err != nil {
				note("hand-off %s: %d hand-offs, then: %v", impl, len(lat), err)
			}
			slices.Sort(lat)
			h := hs[impl]
			h[0], h[1] = append(h[0], quantile(lat, 0.5)), append(h[1], quantile(lat, 0.99))
			hs[impl] = h
			prog("  %d hand-offs: p50 %.3g ms, p99 %.3g ms, max %.3g ms", len(lat), quantile(lat, 0.5), quantile(lat, 0.99), lat[len(lat)-1])
		}
	}
	for impl, h := range hs {
		slices.Sort(h[0])
		slices.Sort(h[1])
		f.set("p50_ms", impl, round3(quantile(h[0], 0.5)))
		f.set("p99_ms", impl, round3(quantile(h[1], 0.5)))
	}

	// The poll hand-off: holds drawn from waitHold.
	if cfg.does("wait") {
		for _, impl := range cfg.pick(nfsWait) {
			prog("poll hand-off (holds %v-%v) across the guests, %s", cfg.waitHold[0], cfg.waitHold[1], impl)
			lat, err := nfsBaton(impl, path("wait", impl), cfg.waitHold[0], cfg.waitHold[1], 1000, 2*cfg.waitDur, warn)
			if err != nil {
				note("poll hand-off %s: %d hand-offs, then: %v", impl, len(lat), err)
			}
			if len(lat) < 3 {
				note("poll hand-off %s: %d hand-offs within %v", impl, len(lat), 2*cfg.waitDur)
				continue
			}
			slices.Sort(lat)
			f.set("wait_p50_ms", impl, round3(quantile(lat, 0.5)))
			f.set("wait_p99_ms", impl, round3(quantile(lat, 0.99)))
			f.set("wait_n", impl, float64(len(lat)))
			prog("  %d hand-offs: p50 %.3g ms, p99 %.3g ms, max %.3g ms", len(lat), quantile(lat, 0.5), quantile(lat, 0.99), lat[len(lat)-1])
		}
	}

	// Server operations per waiting second: a waiter in guest 2 on a lock
	// held in guest 1; both guests' RPCs for the mount.
	if cfg.does("ops") {
		for _, impl := range cfg.pick(nfsOps) {
			prog("server operations while waiting: %s", impl)
			n, d, which, err := nfsWaiting(impl, path("opsidle", impl), mount, cfg.opsDur)
			if err != nil {
				note("server operations (waiting) %s: %v", impl, err)
				continue
			}
			prog("  waiting %v: %d RPCs: %s", d.Round(time.Millisecond), n, which)
			f.set("ops_wait_s", impl, round3(float64(n)/d.Seconds()))
		}
	}
	if !cfg.does("throughput") {
		return
	}
	note("acq/s with 8 processes not measured across the guests: every acquisition would pay the control link's round trips")
}

// opsString lists the counts, the biggest first.
func (s rpcCounts) opsString() string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range s.ops {
		kvs = append(kvs, kv{k, v})
	}
	slices.SortFunc(kvs, func(a, b kv) int {
		if a.v != b.v {
			return b.v - a.v
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for _, x := range kvs {
		parts = append(parts, fmt.Sprintf("%s %d", x.k, x.v))
	}
	return strings.Join(parts, ", ")
}

// guestUnc runs n uncontended acquire+release of impl on dir in the
// guest: how long they took (the guest's clock) and the mount's RPCs.
func guestUnc(g *guestConn, impl, dir string, n int, mount string, limit time.Duration) (time.Duration, rpcCounts, error) {
	l, err := g.request("unc", limit, impl, dir, strconv.Itoa(n), mount)
	if err != nil {
		return 0, rpcCounts{}, err
	}
	var d time.Duration
	var c rpcCounts
	for _, fld := range strings.Fields(l.rest) {
		k, v, _ := strings.Cut(fld, "=")
		switch k {
		case "ns":
			ns, _ := strconv.ParseInt(v, 10, 64)
			d = time.Duration(ns)
		case "rpcs":
			c.total, _ = strconv.Atoi(v)
		case "ops":
			c.ops = map[string]int{}
			for _, o := range strings.Split(v, ",") {
				if name, num, ok := strings.Cut(o, ":"); ok {
					c.ops[name], _ = strconv.Atoi(num)
				}
			}
		}
	}
	if d <= 0 {
		return 0, c, fmt.Errorf("guest %s: unc %s: %s", g.name, impl, l.rest)
	}
	return d, c, nil
}

// nfsBaton hands impl's lock back and forth between a peer in guest 1 and
// one in guest 2 (paths: the lock through each), count times or for
// window: the waiter's Lock begins, the holder holds hold (or a time
// drawn from [hold, holdMax)) more, and releases. Each hand-off, in ms,
// is from the holder's agent passing "unlock" to its peer to the
// waiter's acquisition arriving here. A waiter that acquires before the
// holder was told to release means two holders (warn).
func nfsBaton(impl string, paths [2]string, hold, holdMax time.Duration, count int, window time.Duration, warn func(string, ...any)) ([]float64, error) {
	ps, closeAll, err := startPeers(impl, paths[:], 0)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), window+time.Minute)
	defer cancel()
	if err := ps[0].Lock(ctx); err != nil {
		return nil, err
	}
	holder, waiter := ps[0], ps[1]
	var lat []float64
	end := time.Now().Add(window)
	viol := 0
	type res struct {
		st  stamp
		err error
	}
	for len(lat) < count && time.Now().Before(end) {
		n := waiter.guest.sentCount()
		ch := make(chan res, 1)
		go func() {
			st, err := waiter.lockAt(ctx)
			ch <- res{st, err}
		}()
		if _, err := waiter.guest.fwdAt(n, time.Minute); err != nil {
			return lat, err
		}
		h := hold
		if holdMax > hold {
			h += time.Duration(rand.Int64N(int64(holdMax - hold)))
		}
		var early *res
		select {
		case r := <-ch:
			early = &r
		case <-time.After(h):
		}
		if early != nil {
			if early.err != nil {
				return lat, early.err
			}
			// In while the holder held: not a hand-off.
			viol++
			ch <- *early
		}
		m := holder.guest.sentCount()
		unlocked := make(chan error, 1)
		go func() { unlocked <- holder.unlockIn(peerCallLimit) }()
		rel, err := holder.guest.fwdAt(m, time.Minute)
		if err != nil {
			return lat, err
		}
		r := <-ch
		if r.err != nil {
			return lat, r.err
		}
		if early == nil {
			lat = append(lat, float64(r.st.at-rel)/1e6)
		}
		if err := <-unlocked; err != nil {
			return lat, err
		}
		holder, waiter = waiter, holder
	}
	if viol > 0 {
		warn("%s, hand-off across the guests: %d acquisitions while the other guest's process held the lock: MUTUAL EXCLUSION BROKEN", impl, viol)
	}
	return lat, holder.unlockIn(peerCallLimit)
}

// nfsWaiting counts the RPCs of both guests' mount while a peer in guest
// 2 waits for impl's lock held by a peer in guest 1, for about d.
func nfsWaiting(impl string, paths [2]string, mount string, d time.Duration) (int, time.Duration, string, error) {
	ps, closeAll, err := startPeers(impl, paths[:], 0)
	if err != nil {
		return 0, 0, "", err
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	if err := ps[0].Lock(ctx); err != nil {
		return 0, 0, "", err
	}
	w := ps[1]
	n := w.guest.sentCount()
	got := make(chan error, 1)
	go func() { got <- w.Lock(ctx) }()
	if _, err := w.guest.fwdAt(n, time.Minute); err != nil {
		return 0, 0, "", err
	}
	time.Sleep(300 * time.Millisecond) // its first look is done
	both := func() ([2]rpcCounts, int64, error) {
		var s [2]rpcCounts
		var at [2]int64
		var errs [2]error
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Add(1)
			go func() { defer wg.Done(); s[i], at[i], errs[i] = p.guest.g.stats(mount) }()
		}
		wg.Wait()
		return s, at[1], errors.Join(errs[:]...)
	}
	s1, t1, err := both()
	if err != nil {
		return 0, 0, "", err
	}
	time.Sleep(d)
	s2, t2, err := both()
	if err != nil {
		return 0, 0, "", err
	}
	select {
	case err := <-got:
		return 0, 0, "", fmt.Errorf("the waiter acquired while the holder held (%v): no exclusion", err)
	default:
	}
	hd, wd := s2[0].sub(s1[0]), s2[1].sub(s1[1])
	ps[0].unlockIn(peerCallLimit)
	if err := <-got; err != nil {
		return 0, 0, "", err
	}
	w.unlockIn(peerCallLimit)
	return hd.total + wd.total, time.Duration(t2 - t1), fmt.Sprintf("waiter %s; holder %s", wd.opsString(), hd.opsString()), nil
}

// signal sends sig to pid, in the peer's guest or here.
func (p *peerProc) signal(pid int, sig syscall.Signal) error {
	if p.guest == nil {
		return syscall.Kill(pid, sig)
	}
	name := map[syscall.Signal]string{syscall.SIGSTOP: "STOP", syscall.SIGCONT: "CONT", syscall.SIGKILL: "KILL"}[sig]
	l, err := p.guest.g.request("signal", peerCallLimit, strconv.Itoa(pid), name)
	if err == nil && l.rest != "nil" {
		err = fmt.Errorf("guest %s: kill %d %s: %s", p.guest.g.name, pid, name, l.rest)
	}
	return err
}
