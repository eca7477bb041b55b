//go:build linux

package dlock

// TestChaos: worker processes contend for a few locks while the test
// SIGKILLs and SIGSTOPs holders at random; every holder journals what it
// did, and a checker proves from the journals that no two holders were
// ever inside at once, except a holder paused past its TIMEOUT that was
// then told it lost the lock (the documented residual risk).
//
// The child processes are this test binary again, playing the role
// "chaos-worker" (roles_linux_test.go).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
	"golang.org/x/sys/unix"
)

// Parameters of the chaos run.
const (
	chaosProcs   = 8
	chaosLocks   = 3
	chaosTimeout = 400 * time.Millisecond
	chaosRefresh = chaosTimeout / 3 // the default
	chaosPoll    = 20 * time.Millisecond
	// A dead holder on this host is reclaimed at once by the pid check, at
	// the latest when a waiter next looks: within the slow poll of a
	// watched local filesystem (10 x poll) or the holder's TIMEOUT. The
	// slack covers scheduling on a small, loaded -race machine.
	chaosReclaimBound = chaosTimeout + 1500*time.Millisecond
	// The shortest stop that can let a lease lapse: the heartbeat due
	// just after the stop began, plus the stop, reaches TIMEOUT.
	chaosLapse = chaosTimeout - chaosRefresh
)

func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func journalPath(dir string, lock int) string {
	return filepath.Join(dir, fmt.Sprintf("journal%d", lock))
}

func chaosLockPath(dir string, lock int) string {
	return filepath.Join(dir, fmt.Sprintf("lock%d", lock))
}

// chaosWorker takes random locks until its stdin closes. Each record is
// one O_APPEND write of one line:
//
//	KIND PID FENCE MONO REAL [RESULT]
//
// wait (before Lock), enter (right after Lock), exit (right before
// Unlock), unlock ok|lost|err (Unlock's result), lost (Lost closed).
func chaosWorker() int {
	dir := os.Getenv("DLOCK_CHAOS_DIR")
	lockDir := os.Getenv("DLOCK_CHAOS_LOCKS") // the locks, as this worker sees them
	pid := os.Getpid()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var locks []*Lock
	var journals []*os.File
	for i := 0; i < chaosLocks; i++ {
		l, err := New(chaosLockPath(lockDir, i), WithTimeout(chaosTimeout), WithPollInterval(chaosPoll))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		f, err := os.OpenFile(journalPath(dir, i), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		locks, journals = append(locks, l), append(journals, f)
	}
	rec := func(j *os.File, kind string, fence uint64, res string) {
		line := fmt.Sprintf("%s %d %d %d %d %s\n", kind, pid, fence, monoNow(), time.Now().UnixNano(), res)
		if _, err := j.WriteString(line); err != nil {
			fmt.Fprintln(os.Stderr, "journal:", err)
			os.Exit(1)
		}
	}
	// A process the machine did not run for a while (a loaded CPU) is a
	// paused process, whether or not chaos stopped it: its timers could
	// not fire, and only fencing helps it (the residual risk). It says so
	// in its first journal, as a stall from..to, for the checker.
	go func() {
		const tick = 5 * time.Millisecond
		last := monoNow()
		for range time.Tick(tick) {
			now := monoNow()
			if time.Duration(now-last) >= chaosLapse/2 {
				rec(journals[0], "stall", 0, strconv.FormatInt(last, 10))
			}
			last = now
		}
	}()
	for ctx.Err() == nil {
		i := rand.IntN(chaosLocks)
		l, j := locks[i], journals[i]
		rec(j, "wait", 0, "-")
		if err := l.Lock(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			rec(j, "error", 0, strconv.Quote(err.Error()))
			fmt.Fprintln(os.Stderr, "Lock:", err)
			return 1
		}
		fence := l.Fence()
		rec(j, "enter", fence, "-")
		lost, done := l.Lost(), make(chan struct{})
		watcher := make(chan struct{})
		go func() {
			defer close(watcher)
			select {
			case <-lost:
				rec(j, "lost", fence, "-")
			case <-done:
			}
		}()
		time.Sleep(time.Duration(1+rand.IntN(20)) * time.Millisecond) // work
		rec(j, "exit", fence, "-")
		err := l.Unlock()
		res := "ok"
		switch {
		case errors.Is(err, ErrLost):
			res = "lost"
		case err != nil:
			res = "err:" + strconv.Quote(err.Error())
		}
		close(done)
		<-watcher
		rec(j, "unlock", fence, res)
	}
	return 0
}

// The checker's input and output.

type chaosRec struct {
	kind  string
	pid   int
	fence uint64
	mono  int64
	res   string
}

type chaosStop struct {
	pid      int
	from, to int64 // CLOCK_MONOTONIC of SIGSTOP and SIGCONT
}

type chaosKill struct {
	pid     int
	lock    int
	fence   uint64 // the fence the dead process held
	at      int64  // CLOCK_MONOTONIC of SIGKILL
	latency time.Duration
	seen    bool // the reclaim was seen
}

type chaosHolding struct {
	lock              int
	pid               int
	fence             uint64
	wait, enter, exit int64 // exit 0: none recorded
	unlocked          int64 // time of the unlock record, 0 if none
	order             int   // position of the enter record in the journal
	unlock            string
	lost              bool
	killed            bool
}

func (h *chaosHolding) told() bool { return h.lost || h.unlock == "lost" }

func (h *chaosHolding) String() string {
	return fmt.Sprintf("pid %d fence %d [%d, %d] unlock=%q lost=%v killed=%v", h.pid, h.fence, h.enter, h.exit, h.unlock, h.lost, h.killed)
}

type chaosReport struct {
	acquisitions     int
	kills            int
	killReclaims     int
	maxKillReclaim   time.Duration
	pauses           int
	stalls           int // of them, stalls the workers measured (a loaded CPU)
	longPauses       int
	pausedReclaimed  int           // holdings reclaimed while their process was stopped
	losses           int           // holdings told of a loss
	unexplainedLoss  int           // told of a loss without a long stop
	excusedOverlaps  int           // paused holders overlapped by successors, and told
	maxKillToEnter   time.Duration // from a SIGKILL to the next enter record on its lock
	violations       []string
	endedUnreclaimed int // kills too close to the end to judge
}

func parseJournal(r io.Reader) ([]chaosRec, error) {
	var recs []chaosRec
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.SplitN(sc.Text(), " ", 6)
		if len(f) != 6 {
			return nil, fmt.Errorf("journal line %d: %q is torn", n, sc.Text())
		}
		pid, err1 := strconv.Atoi(f[1])
		fence, err2 := strconv.ParseUint(f[2], 10, 64)
		mono, err3 := strconv.ParseInt(f[3], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("journal line %d: %q: %v", n, sc.Text(), err)
		}
		recs = append(recs, chaosRec{kind: f[0], pid: pid, fence: fence, mono: mono, res: f[5]})
	}
	return recs, sc.Err()
}

// checkChaos judges the journals (one per lock, in append order).
// killedAt gives the SIGKILL time of every killed process.
func checkChaos(journals [][]chaosRec, stops []chaosStop, kills []chaosKill, killedAt map[int]int64, end int64) chaosReport {
	var rep chaosReport
	enters := make([][]*chaosHolding, len(journals)) // per lock
	bad := func(format string, args ...any) {
		rep.violations = append(rep.violations, fmt.Sprintf(format, args...))
	}
	// Stalls the workers measured are stops too (see chaosWorker).
	for _, recs := range journals {
		for _, r := range recs {
			if from, err := strconv.ParseInt(r.res, 10, 64); r.kind == "stall" && err == nil {
				stops = append(stops, chaosStop{pid: r.pid, from: from, to: r.mono})
				rep.stalls++
			}
		}
	}
	rep.pauses = len(stops)
	for _, s := range stops {
		if time.Duration(s.to-s.from) >= chaosLapse {
			rep.longPauses++
		}
	}
	// longStop: a stop of pid, long enough to let a lease lapse, that
	// began before 'before' and ended after 'after'.
	longStop := func(pid int, after, before int64) bool {
		for _, s := range stops {
			if s.pid == pid && time.Duration(s.to-s.from) >= chaosLapse && s.from < before && s.to > after {
				return true
			}
		}
		return false
	}
	for lock, recs := range journals {
		var hs []*chaosHolding
		open := map[int]*chaosHolding{} // pid -> its holding without unlock record
		lastWait := map[int]int64{}
		byKey := map[[2]uint64]*chaosHolding{}
		for _, r := range recs {
			key := [2]uint64{uint64(r.pid), r.fence}
			switch r.kind {
			case "wait":
				lastWait[r.pid] = r.mono
			case "enter":
				if _, dup := byKey[key]; dup {
					bad("lock %d: pid %d entered twice with fence %d", lock, r.pid, r.fence)
					continue
				}
				if prev := open[r.pid]; prev != nil {
					bad("lock %d: pid %d entered fence %d while its fence %d has no unlock record", lock, r.pid, r.fence, prev.fence)
				}
				h := &chaosHolding{lock: lock, pid: r.pid, fence: r.fence, wait: lastWait[r.pid], enter: r.mono, order: len(hs)}
				if h.wait == 0 {
					h.wait = r.mono
				}
				hs = append(hs, h)
				byKey[key], open[r.pid] = h, h
			case "exit", "unlock", "lost":
				h := byKey[key]
				if h == nil {
					bad("lock %d: %s record of pid %d fence %d without enter", lock, r.kind, r.pid, r.fence)
					continue
				}
				switch r.kind {
				case "exit":
					h.exit = r.mono
				case "unlock":
					h.unlock, h.unlocked = r.res, r.mono
					delete(open, r.pid)
					if r.res != "ok" && r.res != "lost" {
						bad("lock %d: %v: Unlock failed: %s", lock, h, r.res)
					}
				case "lost":
					h.lost = true
				}
			case "stall": // counted above
			case "error":
				bad("lock %d: pid %d: Lock failed: %s", lock, r.pid, r.res)
			default:
				bad("lock %d: unknown record %q", lock, r.kind)
			}
		}
		rep.acquisitions += len(hs)
		enters[lock] = hs
		for _, h := range hs {
			if k, ok := killedAt[h.pid]; ok && h.unlock == "" {
				h.killed = true
				if h.exit == 0 || h.exit > k {
					h.exit = k
				}
			}
			if h.exit == 0 {
				h.exit = end // still inside at the end: only if its process failed
				bad("lock %d: %v: no exit record, and the process was not killed", lock, h)
			}
			if h.told() {
				rep.losses++
				if !longStop(h.pid, h.wait, max(h.exit, h.unlocked)) {
					rep.unexplainedLoss++
				}
			}
		}
		// Fences rise strictly in journal order of the enter records,
		// except for a holder that wrote its enter record late (stopped
		// right after Lock returned) and was then told it lost the lock.
		var top uint64
		seen := map[uint64]*chaosHolding{}
		for _, h := range hs {
			if o := seen[h.fence]; o != nil {
				bad("lock %d: fence %d given twice: %v and %v", lock, h.fence, o, h)
			}
			seen[h.fence] = h
			if h.fence <= top && !(h.told() || h.killed) {
				bad("lock %d: fence %d of %v entered after fence %d, and it was never told it lost the lock", lock, h.fence, h, top)
			}
			top = max(top, h.fence)
		}
		// No overlap: a newer holder (higher fence) must enter after every
		// older one has left, unless the older one was stopped long enough
		// to let its lease lapse before the newer one entered, and was told
		// (a killed one cannot be told).
		byFence := slices.Clone(hs)
		slices.SortFunc(byFence, func(a, b *chaosHolding) int { return cmpU64(a.fence, b.fence) })
		excused := map[*chaosHolding]bool{}
		for i, b := range byFence {
			for _, a := range byFence[:i] {
				if b.enter >= a.exit {
					continue
				}
				stopped := longStop(a.pid, a.wait, b.enter)
				switch {
				case stopped && (a.told() || a.killed):
					if !excused[a] {
						excused[a] = true
						rep.excusedOverlaps++
					}
				case stopped:
					bad("lock %d: OVERLAP: %v entered at %d while %v was inside; the older was stopped past TIMEOUT but never told", lock, b, b.enter, a)
				default:
					bad("lock %d: OVERLAP: %v entered at %d while %v was inside (%v before it left)", lock, b, b.enter, a, time.Duration(a.exit-b.enter))
				}
			}
		}
		// Holdings reclaimed while their process was stopped.
		for _, a := range byFence {
			for _, b := range byFence {
				if b.fence > a.fence && b.enter < a.exit && longStop(a.pid, a.wait, b.enter) {
					rep.pausedReclaimed++
					break
				}
			}
		}
	}
	rep.kills = len(kills)
	for _, k := range kills {
		// The journal agrees: someone entered the lock after the kill,
		// with a higher fence.
		if k.lock < len(enters) {
			var next *chaosHolding
			for _, h := range enters[k.lock] {
				if h.fence > k.fence && h.enter > k.at && (next == nil || h.enter < next.enter) {
					next = h
				}
			}
			switch {
			case next != nil && time.Duration(next.enter-k.at) > chaosReclaimBound:
				bad("lock %d: killed holder pid %d (fence %d): the next enter (%v) came %v after the kill, more than %v",
					k.lock, k.pid, k.fence, next, time.Duration(next.enter-k.at), chaosReclaimBound)
			case next != nil:
				rep.maxKillToEnter = max(rep.maxKillToEnter, time.Duration(next.enter-k.at))
			case time.Duration(end-k.at) >= chaosReclaimBound:
				bad("lock %d: killed holder pid %d (fence %d): no enter record with a higher fence after the kill", k.lock, k.pid, k.fence)
			}
		}
		switch {
		case k.seen && k.latency <= chaosReclaimBound:
			rep.killReclaims++
			rep.maxKillReclaim = max(rep.maxKillReclaim, k.latency)
		case k.seen:
			bad("lock %d: killed holder pid %d (fence %d) reclaimed after %v, more than %v", k.lock, k.pid, k.fence, k.latency, chaosReclaimBound)
		case time.Duration(end-k.at) < chaosReclaimBound:
			rep.endedUnreclaimed++
		default:
			bad("lock %d: killed holder pid %d (fence %d) never reclaimed in %v", k.lock, k.pid, k.fence, time.Duration(end-k.at))
		}
	}
	return rep
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r chaosReport) String() string {
	return fmt.Sprintf("acquisitions=%d kills=%d kill-reclaims=%d (max %v, bound %v, %d too late to judge; kill to next enter max %v) pauses=%d (stalls measured: %d; past TIMEOUT-REFRESH: %d) reclaimed-while-paused=%d losses-told=%d (without a long stop: %d) excused-overlaps=%d violations=%d",
		r.acquisitions, r.kills, r.killReclaims, r.maxKillReclaim.Round(time.Millisecond), chaosReclaimBound, r.endedUnreclaimed, r.maxKillToEnter.Round(time.Millisecond),
		r.pauses, r.stalls, r.longPauses, r.pausedReclaimed, r.losses, r.unexplainedLoss, r.excusedOverlaps, len(r.violations))
}

type chaosProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *strings.Builder
	done   chan struct{}
	err    error
	dir    int // the index of its lock directory in lockDirs
}

// TestChaos runs chaosProcs workers on chaosLocks locks for
// DLOCK_CHAOS_SECONDS (default 20, 3 with -short; set minutes by hand).
// The test picks a current holder every 30-230ms and SIGKILLs it (and
// starts a replacement) or SIGSTOPs it, either well short of what could
// let its lease lapse or past TIMEOUT. The checker then requires, per lock:
//   - no overlap of [enter, exit] between an older (lower fence) and a
//     newer holder, unless the older one's process was stopped for at
//     least TIMEOUT-REFRESH before the newer one entered, and the older one
//     was told (Lost closed or Unlock returned ErrLost) or was killed;
//   - fences unique, and rising in journal order of the enter records
//     (a late enter record is allowed only of a holder told it lost);
//   - every SIGKILLed holder's lock reclaimed, by Inspect and by the next
//     enter record, within chaosReclaimBound;
//   - every Unlock ok or ErrLost, and every worker exits 0 at the end.
//
// Totals go to t.Logf, and to stdout with -v.
func TestChaos(t *testing.T) {
	dir := t.TempDir()
	runChaos(t, 20*time.Second, dir, []string{dir})
}

// The chaos run on a real shared filesystem, its workers taking turns
// between the two mounts (coherent mounts only: with sshfs's 20 s of
// cached metadata a 400 ms TIMEOUT would not be judged in time, which the
// checker counts against reclaim latency, not safety).
func TestSharedFSChaos(t *testing.T) {
	fs := needSharedFS(t)
	if fs.cached {
		t.Skip("the chaos run's 400ms TIMEOUT needs coherent mounts")
	}
	d1, d2 := fs.dirs(t)
	runChaos(t, 10*time.Second, t.TempDir(), []string{d1, d2})
}

// runChaos runs the chaos test for dur (DLOCK_CHAOS_SECONDS overrides
// it; -short makes it 3 s), journals in dir, the locks in lockDirs (one
// directory seen through several paths), worker k using lockDirs[k%n].
func runChaos(t *testing.T, dur time.Duration, dir string, lockDirs []string) {
	if lockdir.Self().HostID == "0" {
		t.Skip("no host identity: dead holders are not reclaimed at once")
	}
	if testing.Short() {
		dur = 3 * time.Second
	}
	if s := os.Getenv("DLOCK_CHAOS_SECONDS"); s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs <= 0 {
			t.Fatalf("DLOCK_CHAOS_SECONDS=%q", s)
		}
		dur = time.Duration(secs * float64(time.Second))
	}
	// On a rig that names the sshfs process of the second mount
	// (scripts/hosts.sh), the chaos also freezes that mount, then thaws it:
	// every worker on it is as good as stopped meanwhile.
	freezePID := 0
	if len(lockDirs) > 1 {
		freezePID, _ = strconv.Atoi(os.Getenv("DLOCK_SHAREDFS_SSHFS2_PID"))
	}
	freezes := 0
	var mu sync.Mutex
	procs := map[int]*chaosProc{}
	var all []*chaosProc
	started := 0
	start := func() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "DLOCK_TEST_CHILD=chaos-worker", "DLOCK_CHAOS_DIR="+dir,
			"DLOCK_CHAOS_LOCKS="+lockDirs[started%len(lockDirs)])
		p := &chaosProc{cmd: cmd, stderr: &strings.Builder{}, done: make(chan struct{}), dir: started % len(lockDirs)}
		started++
		cmd.Stderr = p.stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.stdin = stdin
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.err = cmd.Wait(); close(p.done) }()
		mu.Lock()
		procs[cmd.Process.Pid] = p
		all = append(all, p)
		mu.Unlock()
	}
	t.Cleanup(func() {
		for _, p := range all {
			p.cmd.Process.Signal(syscall.SIGCONT)
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	for range chaosProcs {
		start()
	}

	var stops []chaosStop
	var kills []*chaosKill
	killedAt := map[int]int64{}
	killedProcs := 0
	var watchers sync.WaitGroup
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t.Logf("chaos: %d processes, %d locks, TIMEOUT %v, poll %v, for %v", chaosProcs, chaosLocks, chaosTimeout, chaosPoll, dur)
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(30+rng.IntN(200)) * time.Millisecond) // pace the chaos
		// A holder: of a random lock, or of the next one.
		var p *chaosProc
		var pid, lock int
		var fence uint64
		for i, first := 0, rng.IntN(chaosLocks); i < chaosLocks && p == nil; i++ {
			lock = (first + i) % chaosLocks
			st, err := Inspect(chaosLockPath(lockDirs[0], lock))
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if st.Held {
				pid, fence = st.Holder.PID, st.Fence
				p = procs[pid]
			}
		}
		if p == nil {
			continue
		}
		switch a := rng.IntN(10); {
		case freezePID > 0 && (a == 9 || freezes == 0 && time.Until(deadline) < dur/2):
			// Freeze the second mount past TIMEOUT (at least once a run),
			// then thaw it.
			d := chaosTimeout + time.Duration(100+rng.IntN(900))*time.Millisecond
			from := monoNow()
			syscall.Kill(freezePID, syscall.SIGSTOP)
			time.Sleep(d) // the freeze
			syscall.Kill(freezePID, syscall.SIGCONT)
			to := monoNow()
			for pid, q := range procs {
				if q.dir == 1 {
					stops = append(stops, chaosStop{pid: pid, from: from, to: to})
				}
			}
			freezes++
		case a < 4: // SIGKILL, and a replacement
			at := monoNow()
			p.cmd.Process.Kill()
			<-p.done
			killedAt[pid] = at
			delete(procs, pid)
			killedProcs++
			for l := 0; l < chaosLocks; l++ {
				// The lock we picked it by (it may have released it just
				// before it died), and any other the dead process holds.
				f := fence
				if l != lock {
					st, err := Inspect(chaosLockPath(lockDirs[0], l))
					if err != nil || !st.Held || st.Holder.PID != pid {
						continue
					}
					f = st.Fence
				}
				k := &chaosKill{pid: pid, lock: l, fence: f, at: at}
				kills = append(kills, k)
				watchers.Add(1)
				go func() {
					defer watchers.Done()
					for limit := time.Now().Add(chaosReclaimBound + 5*time.Second); time.Now().Before(limit); {
						st, err := Inspect(chaosLockPath(lockDirs[0], k.lock))
						if err == nil && (!st.Held || st.Holder.PID != k.pid || st.Fence != k.fence) {
							k.latency, k.seen = time.Duration(monoNow()-k.at), true
							return
						}
						time.Sleep(2 * time.Millisecond) // poll the reclaim
					}
				}()
			}
			start()
		default: // SIGSTOP for a while: past TIMEOUT or well short of it
			d := time.Duration(10+rng.IntN(int(chaosLapse.Milliseconds()/2))) * time.Millisecond
			if a >= 6 {
				d = chaosTimeout + time.Duration(100+rng.IntN(500))*time.Millisecond
			}
			from := monoNow()
			p.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(d) // the pause
			p.cmd.Process.Signal(syscall.SIGCONT)
			stops = append(stops, chaosStop{pid: pid, from: from, to: monoNow()})
		}
	}
	// Stop: every worker finishes its round and exits 0. A waiter gives
	// up then, so a holder killed just before is left for nobody to
	// reclaim: the checker judges reclaims up to this moment only.
	end := monoNow()
	mu.Lock()
	for _, p := range procs {
		p.stdin.Close()
	}
	mu.Unlock()
	for pid, p := range procs {
		select {
		case <-p.done:
			if p.err != nil {
				t.Errorf("worker %d: %v; stderr: %s", pid, p.err, p.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("worker %d did not finish", pid)
		}
	}
	watchers.Wait()

	var journals [][]chaosRec
	for l := 0; l < chaosLocks; l++ {
		f, err := os.Open(journalPath(dir, l))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := parseJournal(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		journals = append(journals, recs)
	}
	var ks []chaosKill
	for _, k := range kills {
		ks = append(ks, *k)
	}
	rep := checkChaos(journals, stops, ks, killedAt, end)
	t.Logf("chaos totals: holders SIGKILLed=%d, mount freezes=%d, %v", killedProcs, freezes, rep)
	if testing.Verbose() {
		fmt.Printf("chaos totals: holders SIGKILLed=%d, mount freezes=%d, %v\n", killedProcs, freezes, rep)
	}
	for i, v := range rep.violations {
		if i == 20 {
			t.Errorf("... and %d more", len(rep.violations)-i)
			break
		}
		t.Errorf("VIOLATION: %s", v)
	}
	if rep.acquisitions < 10*chaosLocks {
		t.Errorf("only %d acquisitions: the workers hardly ran", rep.acquisitions)
	}
}

// The checker can fail: hand-made journals with each kind of violation,
// and the legitimate cases beside them.
func TestChaosCheckerCatchesViolations(t *testing.T) {
	const ms = int64(time.Millisecond)
	j := func(lines ...string) []chaosRec {
		recs, err := parseJournal(strings.NewReader(strings.Join(lines, "\n") + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	// rec formats one record: times in milliseconds.
	rec := func(kind string, pid int, fence uint64, at int64, res string) string {
		return fmt.Sprintf("%s %d %d %d %d %s", kind, pid, fence, at*ms, at*ms, res)
	}
	clean := []string{
		rec("wait", 1, 0, 0, "-"), rec("enter", 1, 10, 1, "-"), rec("exit", 1, 10, 5, "-"), rec("unlock", 1, 10, 6, "ok"),
		rec("wait", 2, 0, 2, "-"), rec("enter", 2, 11, 6, "-"), rec("exit", 2, 11, 9, "-"), rec("unlock", 2, 11, 10, "ok"),
	}
	// pid 1 paused from 2ms to 1000ms; pid 2 reclaims at 500ms.
	paused := func(told bool) []string {
		res := "ok"
		if told {
			res = "lost"
		}
		return []string{
			rec("wait", 1, 0, 0, "-"), rec("enter", 1, 10, 1, "-"),
			rec("wait", 2, 0, 1, "-"), rec("enter", 2, 11, 500, "-"),
			rec("exit", 1, 10, 1001, "-"), rec("unlock", 1, 10, 1002, res),
			rec("exit", 2, 11, 1003, "-"), rec("unlock", 2, 11, 1004, "ok"),
		}
	}
	stop := []chaosStop{{pid: 1, from: 2 * ms, to: 1000 * ms}}
	shortStop := []chaosStop{{pid: 1, from: 2 * ms, to: 50 * ms}}
	for _, tc := range []struct {
		name   string
		lines  []string
		stops  []chaosStop
		kills  []chaosKill
		killed map[int]int64
		want   string // "" for no violation, else part of the message
	}{
		{"clean hand-off", clean, nil, nil, nil, ""},
		{"overlap", []string{
			rec("wait", 1, 0, 0, "-"), rec("enter", 1, 10, 1, "-"),
			rec("wait", 2, 0, 2, "-"), rec("enter", 2, 11, 3, "-"),
			rec("exit", 1, 10, 5, "-"), rec("unlock", 1, 10, 6, "ok"),
			rec("exit", 2, 11, 9, "-"), rec("unlock", 2, 11, 10, "ok"),
		}, nil, nil, nil, "OVERLAP"},
		{"paused past TIMEOUT and told", paused(true), stop, nil, nil, ""},
		{"paused past TIMEOUT, not told", paused(false), stop, nil, nil, "never told"},
		{"told, but the pause was too short to excuse it", paused(true), shortStop, nil, nil, "OVERLAP"},
		{"fence does not rise", []string{
			rec("enter", 1, 10, 1, "-"), rec("exit", 1, 10, 5, "-"), rec("unlock", 1, 10, 6, "ok"),
			rec("enter", 2, 10, 7, "-"), rec("exit", 2, 10, 9, "-"), rec("unlock", 2, 10, 10, "ok"),
		}, nil, nil, nil, "fence 10 given twice"},
		{"fence goes back", []string{
			rec("enter", 1, 11, 1, "-"), rec("exit", 1, 11, 5, "-"), rec("unlock", 1, 11, 6, "ok"),
			rec("enter", 2, 10, 7, "-"), rec("exit", 2, 10, 9, "-"), rec("unlock", 2, 10, 10, "ok"),
		}, nil, nil, nil, "never told"},
		{"missing exit", []string{rec("enter", 1, 10, 1, "-")}, nil, nil, nil, "no exit record"},
		{"killed inside", []string{rec("enter", 1, 10, 1, "-")}, nil, nil, map[int]int64{1: 3 * ms}, ""},
		{"kill reclaimed in time", clean, nil, []chaosKill{{pid: 3, lock: 0, fence: 9, at: 0, latency: 300 * time.Millisecond, seen: true}}, nil, ""},
		{"kill reclaimed too late", clean, nil, []chaosKill{{pid: 3, lock: 0, fence: 9, at: 0, latency: 5 * time.Second, seen: true}}, nil, "reclaimed after"},
		{"kill never reclaimed", clean, nil, []chaosKill{{pid: 3, lock: 0, fence: 9, at: 0}}, nil, "never reclaimed"},
		{"kill, and the next enter too late", []string{
			rec("enter", 1, 10, 1, "-"), rec("exit", 1, 10, 5, "-"), rec("unlock", 1, 10, 6, "ok"),
			rec("enter", 2, 11, 4000, "-"), rec("exit", 2, 11, 4001, "-"), rec("unlock", 2, 11, 4002, "ok"),
		}, nil, []chaosKill{{pid: 3, lock: 0, fence: 10, at: 7 * ms, latency: time.Millisecond, seen: true}}, nil, "the next enter"},
		{"kill, and nobody entered after", clean, nil, []chaosKill{{pid: 3, lock: 0, fence: 11, at: 0, latency: time.Millisecond, seen: true}}, nil, "no enter record"},
		{"Unlock error", []string{rec("enter", 1, 10, 1, "-"), rec("exit", 1, 10, 2, "-"), rec("unlock", 1, 10, 3, `err:"boom"`)}, nil, nil, nil, "Unlock failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := checkChaos([][]chaosRec{j(tc.lines...)}, tc.stops, tc.kills, tc.killed, 10_000*ms)
			got := strings.Join(rep.violations, "\n")
			switch {
			case tc.want == "" && got != "":
				t.Fatalf("violations in a legitimate journal: %s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Fatalf("violations %q, want one saying %q (%v)", got, tc.want, rep)
			}
		})
	}
	if _, err := parseJournal(strings.NewReader("enter 1 10\n")); err == nil {
		t.Error("a torn journal line was accepted")
	}
}
