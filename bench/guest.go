package main

// The bench's agent inside a qemu guest of scripts/qemu-nfs.sh (nfs.go is
// the host's side). The guest's /init runs this binary with
// DLOCKBENCH_CTL set; it calls the host there and carries out its
// commands, one line each, "ID VERB ARGS...", answering "ID EVENT ...".
// The host stamps every answer with its own clock as it arrives: the
// times of a hand-off between two guests come from one clock.
//
//	ID clock UNIXNANO      -> ID clock MONO          the guest's clock set to the host's
//	ID mono                -> ID mono MONO           the guest's CLOCK_MONOTONIC
//	ID peer IMPL STALE PATH -> ID started PID, then ID out LINE / ID err LINE
//	                          for each line of the Go peer (peer.go), ID exited ERR
//	ID in LINE             -> ID fwd                 LINE written to peer ID's stdin
//	ID close / ID kill                               ends peer ID
//	ID signal PID SIG      -> ID signaled ERR        kill(PID, SIG) (STOP, CONT, KILL)
//	ID stats MOUNT         -> ID stats total=N OP=N ...  the mount's NFS RPCs so far
//	ID unc IMPL DIR N MOUNT -> ID unc ns=NS rpcs=N ops=OP:N,...
//	                          N uncontended acquire+release of IMPL on DIR (the
//	                          op is kept for the next unc of the same IMPL and DIR),
//	                          and the RPCs MOUNT sent meanwhile

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const guestCtlEnv = "DLOCKBENCH_CTL"

// maybeGuest runs the agent if this process is the bench in a guest, and
// exits.
func maybeGuest() {
	ctl := os.Getenv(guestCtlEnv)
	if ctl == "" {
		return
	}
	os.Unsetenv(guestCtlEnv) // not for the peers it starts
	os.Setenv(dlockBinEnv, "/bin/dlock")
	os.Exit(guestAgent(ctl))
}

type benchAgent struct {
	mu    sync.Mutex
	w     *bufio.Writer
	peers map[string]*guestProc
	ops   map[string]*op
}

type guestProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
}

func guestAgent(ctl string) int {
	var c net.Conn
	var err error
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if c, err = net.DialTimeout("tcp", ctl, 5*time.Second); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		fmt.Printf("dlockbench: error connecting to %s: %v\n", ctl, err)
		return 1
	}
	a := &benchAgent{w: bufio.NewWriter(c), peers: map[string]*guestProc{}, ops: map[string]*op{}}
	host, _ := os.Hostname()
	a.say("- hello %s", host)
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var unc sync.Mutex // uncontended batches one at a time: they are timed
	for sc.Scan() {
		id, rest, _ := strings.Cut(sc.Text(), " ")
		verb, args, _ := strings.Cut(rest, " ")
		switch verb {
		case "in", "close", "kill":
			// In order, at once: a peer's lines must not overtake each other.
			a.toPeer(id, verb, args)
		case "unc":
			go func() {
				unc.Lock()
				defer unc.Unlock()
				a.say("%s %s", id, a.uncontended(strings.Fields(args)))
			}()
		default:
			go a.command(id, verb, strings.Fields(args))
		}
	}
	fmt.Printf("dlockbench: control connection closed: %v\n", sc.Err())
	return 0
}

func (a *benchAgent) say(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.w, format+"\n", args...)
	a.w.Flush()
}

func (a *benchAgent) command(id, verb string, args []string) {
	switch verb {
	case "clock":
		ns, err := strconv.ParseInt(args[0], 10, 64)
		if err == nil {
			tv := syscall.NsecToTimeval(ns)
			err = syscall.Settimeofday(&tv)
		}
		if err != nil {
			a.say("%s error clock: %v", id, err)
			return
		}
		a.say("%s clock %d", id, mono())
	case "mono":
		a.say("%s mono %d", id, mono())
	case "peer":
		a.startPeer(id, args)
	case "signal":
		pid, _ := strconv.Atoi(args[0])
		sig := map[string]syscall.Signal{"STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT, "KILL": syscall.SIGKILL}[args[1]]
		if pid <= 0 || sig == 0 {
			a.say("%s signaled error=bad-signal", id)
			return
		}
		a.say("%s signaled %s", id, errText(syscall.Kill(pid, sig)))
	case "stats":
		a.say("%s stats %s", id, mountRPCs(args[0]))
	default:
		a.say("%s error unknown command %s", id, verb)
	}
}

// startPeer starts a Go peer (this binary in peer mode) and forwards its
// lines.
func (a *benchAgent) startPeer(id string, args []string) {
	if len(args) != 3 {
		a.say("%s error peer wants IMPL STALE PATH", id)
		return
	}
	stale, _ := time.ParseDuration(args[1])
	cmd, err := peerCommand(args[0], args[2], stale)
	if err != nil {
		a.say("%s error %s", id, errText(err))
		return
	}
	cmd.SysProcAttr = peerSysProcAttr()
	in, err := cmd.StdinPipe()
	if err != nil {
		a.say("%s error %s", id, errText(err))
		return
	}
	out, _ := cmd.StdoutPipe()
	errp, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		a.say("%s error %s", id, errText(err))
		return
	}
	a.mu.Lock()
	a.peers[id] = &guestProc{cmd: cmd, in: in}
	a.mu.Unlock()
	a.say("%s started %d", id, cmd.Process.Pid)
	var wg sync.WaitGroup
	for _, s := range []struct {
		r    io.Reader
		kind string
	}{{out, "out"}, {errp, "err"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(s.r)
			for sc.Scan() {
				a.say("%s %s %s", id, s.kind, sc.Text())
			}
		}()
	}
	wg.Wait()
	err = cmd.Wait()
	a.mu.Lock()
	delete(a.peers, id)
	a.mu.Unlock()
	a.say("%s exited %s", id, errText(err))
}

func (a *benchAgent) toPeer(id, verb, line string) {
	a.mu.Lock()
	p := a.peers[id]
	a.mu.Unlock()
	if p == nil {
		if verb == "in" {
			a.say("%s fwd error=no-peer", id)
		}
		return
	}
	switch verb {
	case "in":
		_, err := io.WriteString(p.in, line+"\n")
		if err != nil {
			a.say("%s fwd %s", id, errText(err))
			return
		}
		a.say("%s fwd", id)
	case "close":
		p.in.Close()
	case "kill":
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
	}
}

// uncontended runs N of IMPL's uncontended ops on DIR, counting MOUNT's
// RPCs meanwhile.
func (a *benchAgent) uncontended(args []string) string {
	if len(args) != 4 {
		return "error unc wants IMPL DIR N MOUNT"
	}
	impl, dir, mount := args[0], args[1], args[3]
	n, _ := strconv.Atoi(args[2])
	key := impl + " " + dir
	o := a.ops[key]
	if o == nil {
		var err error
		if o, err = newOp(impl, dir, ""); err != nil {
			return "error " + errText(err)
		}
		// The lock made, as in every later batch: only acquisitions count.
		if _, err := runBatch(o, 1); err != nil {
			o.close()
			return "error " + errText(err)
		}
		a.ops[key] = o
	}
	before := parseRPCs(mountRPCs(mount))
	d, err := runBatch(o, n)
	after := parseRPCs(mountRPCs(mount))
	if err != nil {
		return "error " + errText(err)
	}
	diff := after.sub(before)
	var ops []string
	for _, k := range slices.Sorted(maps.Keys(diff.ops)) {
		ops = append(ops, fmt.Sprintf("%s:%d", k, diff.ops[k]))
	}
	note := ""
	if o.note != "" {
		note = " note=" + strings.ReplaceAll(o.note, " ", "_")
	}
	return fmt.Sprintf("unc ns=%d rpcs=%d ops=%s%s", d.Nanoseconds(), diff.total, strings.Join(ops, ","), note)
}

// errText is err's message without spaces, or nil.
func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// mountRPCs sums the per-op RPC counts of the NFS mount at mount in
// /proc/self/mountstats: "vers=V total=N OP=N ...".
func mountRPCs(mount string) string {
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
			f := strings.Fields(rest)
			if !ok || len(f) == 0 {
				continue
			}
			if n, err := strconv.Atoi(f[0]); err == nil && n > 0 {
				total += n
				ops = append(ops, fmt.Sprintf("%s=%d", name, n))
			}
		}
	}
	if vers == "" {
		return "error=no-nfs-mount-" + mount
	}
	return fmt.Sprintf("%s total=%d %s", vers, total, strings.Join(ops, " "))
}

// rpcCounts is a mountRPCs answer: the total and each op's.
type rpcCounts struct {
	vers  string
	total int
	ops   map[string]int
}

func parseRPCs(line string) rpcCounts {
	s := rpcCounts{ops: map[string]int{}}
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
		case "error":
		default:
			s.ops[k] = n
		}
	}
	return s
}

// sub is what was counted between b and s.
func (s rpcCounts) sub(b rpcCounts) rpcCounts {
	d := rpcCounts{vers: s.vers, total: s.total - b.total, ops: map[string]int{}}
	for k, v := range s.ops {
		if v-b.ops[k] != 0 {
			d.ops[k] = v - b.ops[k]
		}
	}
	return d
}

func (s rpcCounts) add(o rpcCounts) rpcCounts {
	d := rpcCounts{vers: s.vers, total: s.total + o.total, ops: map[string]int{}}
	if d.vers == "" {
		d.vers = o.vers
	}
	for k, v := range s.ops {
		d.ops[k] += v
	}
	for k, v := range o.ops {
		d.ops[k] += v
	}
	return d
}
