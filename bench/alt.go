package main

// -alternatives: dlock side by side with the lock libraries users would
// pick instead, on every filesystem here, for speed and correctness, in
// one run; writes a Markdown table and an SVG chart (and a PNG of it).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// altConfig sizes an -alternatives run.
type altConfig struct {
	quick    bool
	out      string   // directory for alternatives.md/.svg/.png
	fss      []string // filesystems to run on
	repo     string   // the dlock checkout (for cmd/dlock and scripts/)
	rigState string   // state directory of the sshfs rig
	progress io.Writer
	args     []string // the command line's arguments, for the report

	uncRounds   int
	uncTarget   time.Duration // an uncontended batch lasts about this long
	uncLimit    time.Duration // ... and is given up after this long (a lock that never acquires)
	rounds      int           // hand-off and throughput trials per impl
	warm, dur   time.Duration
	herdDur     time.Duration
	opsDur      time.Duration // server-operation counting windows
	cntProcs    int           // counter check: processes ...
	cntIters    int           // ... and increments each
	cntLimit    time.Duration // ... stopped after this long
	staleRounds int
	lateRounds  int
	parallel    int // stale and late rounds of one impl run at once, each its own lock and processes
	stale       time.Duration
	herdN       int
	waitHold    [2]time.Duration // the poll hand-off: holds drawn from [lo, hi)
	waitDur     time.Duration    // ... its window
	groups      map[string]bool  // the groups of rows to measure (nil: all)
	impls       map[string]bool  // the implementations to measure (nil: all)
	absent      map[string]bool  // peers not installed here (filelock's newest classes)
}

// altAllFS are the filesystems -alternatives measures by default.
var altAllFS = []string{"tmpfs", "ext4", "sshfs-coherent", "sshfs-default", "glusterfs", "nfs-default", "nfs-actimeo0"}

// altGroups are the groups of rows -rows can pick.
var altGroups = []string{"unc", "handoff", "throughput", "herd", "wait", "ops", "counter", "stale", "late"}

// pick is the implementations of list this run measures.
func (c altConfig) pick(list []string) []string {
	var out []string
	for _, impl := range list {
		if (c.impls == nil || c.impls[impl]) && !c.absent[impl] {
			out = append(out, impl)
		}
	}
	return out
}

// does reports whether group is measured in this run.
func (c altConfig) does(group string) bool { return c.groups == nil || c.groups[group] }

// altSizes: -quick is CI's run; the full one writes docs/. -stale-rounds
// 1000 (and -late-rounds) is the full count, for a hand run.
func altSizes(quick bool) altConfig {
	if quick {
		return altConfig{quick: true, uncRounds: 3, uncTarget: 15 * time.Millisecond, rounds: 1,
			warm: 200 * time.Millisecond, dur: 600 * time.Millisecond, herdDur: 800 * time.Millisecond,
			opsDur: 2 * time.Second, cntProcs: 2, cntIters: 15, cntLimit: 20 * time.Second, uncLimit: 30 * time.Second, staleRounds: 20, lateRounds: 20, parallel: 10,
			stale: 2 * time.Second, herdN: 16,
			waitHold: [2]time.Duration{50 * time.Millisecond, 250 * time.Millisecond}, waitDur: 5 * time.Second}
	}
	return altConfig{uncRounds: 9, uncTarget: 50 * time.Millisecond, rounds: 2,
		warm: 300 * time.Millisecond, dur: 1500 * time.Millisecond, herdDur: 2 * time.Second,
		opsDur: 2 * time.Second, cntProcs: 4, cntIters: 60, cntLimit: 40 * time.Second, uncLimit: 30 * time.Second, staleRounds: 100, lateRounds: 50, parallel: 25,
		stale: 2 * time.Second, herdN: 64,
		waitHold: [2]time.Duration{50 * time.Millisecond, 250 * time.Millisecond}, waitDur: 5 * time.Second}
}

// The implementations of each row. Peers' plain names are their
// defaults; "-tuned" their fair settings.
var (
	altUncontended = []string{implDlock, implDlockRun, implFlock, "portalocker", "locket", "filelock", "softfilelock",
		"softfilelease", "strictsoftfilelock",
		"lockbydir", "proper-lockfile", "proper-lockfile-tuned", implFloorChecked, implFloorMkdir, implPipe}
	altHandoff = []string{implDlock, implDlockPoll, implDlockRun, implFlock, "portalocker", "portalocker-tuned", "locket",
		"filelock", "filelock-tuned", "softfilelock", "softfilelock-tuned",
		"softfilelease", "softfilelease-tuned", "strictsoftfilelock", "strictsoftfilelock-tuned",
		"lockbydir", "lockbydir-tuned", "proper-lockfile", "proper-lockfile-tuned", implFloorWatch}
	altTuned = []string{implDlock, implDlockRun, implFlock, "portalocker-tuned", "locket", "filelock-tuned",
		"softfilelock-tuned", "softfilelease-tuned", "strictsoftfilelock-tuned", "lockbydir-tuned", "proper-lockfile-tuned"}
	// The poll hand-off (shared filesystems): the defaults, the tuned
	// peers that exclude there, and dlock polling only.
	altWait = []string{implDlock, implDlockPoll, implDlock5, "softfilelock", "softfilelock-tuned",
		"softfilelease", "softfilelease-tuned", "strictsoftfilelock", "lockbydir", "lockbydir-tuned",
		"proper-lockfile", "proper-lockfile-tuned", implFlock, "portalocker", "filelock"}
	altOps = []string{implDlock, implDlock5, implDlockRun, implFlock, "portalocker", "portalocker-tuned", "locket", "filelock", "filelock-tuned",
		"softfilelock", "softfilelock-tuned", "softfilelease", "softfilelease-tuned", "strictsoftfilelock",
		"lockbydir", "lockbydir-tuned", "proper-lockfile", "proper-lockfile-tuned"}
	// newFilelock are filelock's classes of 2026 (3.2x): measured only if
	// the filelock the Python peers import has them (Debian's 3.9 has not;
	// bench/README.md says how to put a newer one on PYTHONPATH).
	newFilelock = []string{"softfilelease", "softfilelease-tuned", "strictsoftfilelock", "strictsoftfilelock-tuned"}
)

// fsRun is what one filesystem gave.
type fsRun struct {
	Name    string
	Dirs    []string `json:"-"`
	Rig     string   `json:"-"` // the rig's state directory (shared filesystems)
	Shared  bool
	Metrics map[string]map[string]float64 // metric -> impl -> value
	Checks  map[string]map[string]verdict // check -> impl -> verdict
	Viol    map[string]bool               // impl: some speed trial found two holders at once
	Notes   []string
}

// scrub names the mounts in notes, in place of this machine's paths.
func (f *fsRun) scrub() {
	sub := func(n string) string {
		for i, d := range f.Dirs {
			n = strings.ReplaceAll(n, d, fmt.Sprintf("MOUNT%d", i+1))
		}
		return strings.ReplaceAll(n, "\n", " ")
	}
	for i, n := range f.Notes {
		f.Notes[i] = sub(n)
	}
	for _, c := range f.Checks {
		for impl, v := range c {
			v.Note, v.NA = sub(v.Note), sub(v.NA)
			v.Rounds = slices.Clone(v.Rounds)
			for i, r := range v.Rounds {
				v.Rounds[i] = sub(r)
			}
			c[impl] = v
		}
	}
}

func (f *fsRun) set(metric, impl string, v float64) {
	if f.Metrics[metric] == nil {
		f.Metrics[metric] = map[string]float64{}
	}
	f.Metrics[metric][impl] = v
}

func (f *fsRun) check(name, impl string, v verdict) {
	if f.Checks[name] == nil {
		f.Checks[name] = map[string]verdict{}
	}
	f.Checks[name][impl] = v
}

// altReport is a whole -alternatives run.
type altReport struct {
	Started          time.Time
	Elapsed          time.Duration
	Machine          string
	LoadStart, Load  string
	Versions         []string
	Command          string
	FS               []*fsRun
	Quick            bool
	Stale            time.Duration
	WaitHold         [2]time.Duration
	Parallel         int
	HerdN            int
	CntProcs, CntIts int
}

func runAlternatives(cfg altConfig) (*altReport, error) {
	prog := func(format string, args ...any) {
		if cfg.progress != nil {
			fmt.Fprintf(cfg.progress, format+"\n", args...)
		}
	}
	rep := &altReport{Started: time.Now(), Machine: machine(), LoadStart: loadavg(), Quick: cfg.quick,
		Stale: cfg.stale, WaitHold: cfg.waitHold, Parallel: cfg.parallel, HerdN: cfg.herdN, CntProcs: cfg.cntProcs, CntIts: cfg.cntIters}
	rep.Command = "cd bench && go run . -alternatives"
	if cfg.quick {
		rep.Command += " -quick"
	}
	if cfg.args != nil {
		rep.Command = "cd bench && go run . " + strings.Join(reportArgs(cfg.args), " ")
	}
	if os.Getenv("PYTHONPATH") != "" {
		// Another filelock than Debian's, most likely (bench/README.md).
		rep.Command = strings.Replace(rep.Command, "go run", "PYTHONPATH=<a filelock checkout's src> go run", 1)
	}
	tmp, err := os.MkdirTemp("", "dlockbench-alt-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := altEnv(cfg, tmp); err != nil {
		return nil, err
	}
	if !newFilelockHere() {
		cfg.absent = map[string]bool{}
		for _, impl := range newFilelock {
			cfg.absent[impl] = true
		}
		prog("filelock's SoftFileLease and StrictSoftFileLock are not in the filelock Python imports here: their rows are left out (bench/README.md says how to add them)")
	}
	rep.Versions = versions(cfg)
	if cfg.uncLimit <= 0 {
		cfg.uncLimit = 30 * time.Second
	}
	var nfs *nfsRig // booted once for every NFS filesystem of the run
	var nfsErr error
	for i, name := range cfg.fss {
		var dirs []string
		var rigDown func()
		var rig string
		shared := strings.HasPrefix(name, "sshfs") || name == "glusterfs" || strings.HasPrefix(name, "nfs-")
		switch name {
		case "nfs-default", "nfs-actimeo0":
			if nfs == nil && nfsErr == nil {
				if nfs, nfsErr = nfsUp(cfg, prog); nfsErr == nil {
					defer nfs.close()
					rep.Versions = append(rep.Versions, nfs.versions()...)
				}
			}
			if nfsErr != nil {
				prog("=== %s: not measured: %v", name, nfsErr)
				rep.FS = append(rep.FS, &fsRun{Name: name, Notes: []string{fmt.Sprintf("not measured: %v", nfsErr)}})
				continue
			}
			k := nfsFS[name].mount
			dirs = []string{fmt.Sprintf("nfs:g1:/m%d", k), fmt.Sprintf("nfs:g2:/m%d", k)}
			rig = nfs.state
			if !slices.ContainsFunc(cfg.fss[i+1:], func(n string) bool { return strings.HasPrefix(n, "nfs-") }) {
				rigDown = nfs.close // the guests' CPU for the filesystems after
			}
		case "tmpfs":
			dirs = []string{"/dev/shm"}
		case "ext4":
			dirs = []string{os.TempDir()}
		case "sshfs-coherent", "sshfs-default", "glusterfs":
			script, state, env := "sharedfs.sh", cfg.rigState+"-"+strings.TrimPrefix(name, "sshfs-"), "SHAREDFS_CACHE="+strings.TrimPrefix(name, "sshfs-")
			if name == "glusterfs" {
				// A distribute volume over 3 bricks, mounted twice.
				script, state, env = "glusterfs.sh", cfg.rigState+"-gluster", "GLUSTER_VOLUME=distribute"
			}
			rig = state
			m, down, err := rigUp(cfg, script, state, env)
			if err != nil {
				// A rig that cannot start here is a note, not the end of the run.
				prog("=== %s: not measured: %v", name, err)
				rep.FS = append(rep.FS, &fsRun{Name: name, Notes: []string{fmt.Sprintf("not measured: %v", err)}})
				continue
			}
			dirs = m
			defer down()
			rigDown = down
		default:
			return nil, fmt.Errorf("no filesystem %q (want %s)", name, strings.Join(altAllFS, ", "))
		}
		base := make([]string, len(dirs))
		sub := fmt.Sprintf("dlockbench-alt-%d", os.Getpid())
		for i, d := range dirs {
			base[i] = filepath.Join(d, sub)
		}
		if err := os.Mkdir(hostView(base[0]), 0o755); err != nil {
			return nil, err
		}
		f := &fsRun{Name: name, Dirs: base, Rig: rig, Shared: shared, Metrics: map[string]map[string]float64{}, Checks: map[string]map[string]verdict{}, Viol: map[string]bool{}}
		if got := fsName(base[0]); !shared && got != name {
			f.Notes = append(f.Notes, fmt.Sprintf("%s is %s here", dirs[0], got))
		}
		prog("=== %s: %s", name, strings.Join(base, " and "))
		altFS(cfg, f, tmp, prog)
		f.scrub()
		os.RemoveAll(hostView(base[0]))
		rep.FS = append(rep.FS, f)
		if rigDown != nil {
			rigDown()
		}
	}
	rep.Load = loadavg()
	rep.Elapsed = time.Since(rep.Started)
	return rep, nil
}

// altEnv builds the dlock CLI and tells the workers and peers where
// everything is.
func altEnv(cfg altConfig, tmp string) error {
	bin := filepath.Join(tmp, "dlock")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dlock")
	build.Dir = cfg.repo
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/dlock: %v: %s", err, out)
	}
	peers, err := filepath.Abs("peers")
	if err != nil {
		return err
	}
	nfsOnly := !slices.ContainsFunc(cfg.fss, func(n string) bool { return !strings.HasPrefix(n, "nfs-") })
	if _, err := os.Stat(filepath.Join(peers, "node", "node_modules", "proper-lockfile")); err != nil && !nfsOnly {
		return fmt.Errorf("proper-lockfile is not installed: cd bench/peers/node && npm ci")
	}
	py := "/usr/bin/python3" // Debian's, with python3-portalocker & co.
	if _, err := os.Stat(py); err != nil {
		py = "python3"
	}
	os.Setenv(dlockBinEnv, bin)
	os.Setenv(peersDirEnv, peers)
	os.Setenv(pythonEnv, py)
	return nil
}

// reportArgs are the command line's arguments as the report shows them:
// without where the rigs' state and the report went (paths of the
// machine that ran it, which change no figure).
func reportArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		name, _, hasValue := strings.Cut(a, "=")
		if name == "rig-state" || name == "out" {
			if !hasValue {
				i++ // its value is the next argument
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// newFilelockHere: the filelock the Python peers import has the classes
// of 2026 (SoftFileLease, StrictSoftFileLock).
func newFilelockHere() bool {
	return exec.Command(os.Getenv(pythonEnv), "-c", "import filelock; filelock.SoftFileLease; filelock.StrictSoftFileLock").Run() == nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func versions(cfg altConfig) []string {
	var v []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/gofrs/flock" {
				v = append(v, "gofrs/flock "+d.Version)
			}
		}
	}
	if out, err := exec.Command("git", "-C", cfg.repo, "describe", "--always").Output(); err == nil {
		d := "dlock " + strings.TrimSpace(string(out))
		// Changed code (not docs) makes the figures not the commit's.
		if st, err := exec.Command("git", "-C", cfg.repo, "status", "--porcelain", "--", "*.go", "bench/peers").Output(); err == nil && len(st) > 0 {
			d += " with uncommitted code changes"
		}
		v = append(v, d)
	}
	py := os.Getenv(pythonEnv)
	if out, err := exec.Command(py, "-c", `import sys
from importlib.metadata import version
import filelock
print("Python %d.%d.%d" % sys.version_info[:3], *["%s %s" % (p, version(p)) for p in ("portalocker", "locket")], "filelock " + filelock.__version__, sep=", ")`).Output(); err == nil {
		v = append(v, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		v = append(v, "Node "+strings.TrimSpace(string(out)))
	}
	if b, err := os.ReadFile(filepath.Join(os.Getenv(peersDirEnv), "node", "node_modules", "proper-lockfile", "package.json")); err == nil {
		var pj struct{ Version string }
		json.Unmarshal(b, &pj)
		v = append(v, "proper-lockfile "+pj.Version)
	}
	return v
}

// rigUp brings up a two-mount rig of scripts/ (sharedfs.sh, glusterfs.sh)
// in state, with env added to the environment.
func rigUp(cfg altConfig, script, state, env string) ([]string, func(), error) {
	script = filepath.Join(cfg.repo, "scripts", script)
	if _, err := os.Stat(script); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("bash", script, "up", state)
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var once sync.Once
	down := func() { once.Do(func() { rigDown(script, state) }) }
	if err != nil {
		down()
		return nil, nil, fmt.Errorf("%s up: %w", filepath.Base(script), err)
	}
	exports := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			exports[k] = strings.Trim(v, `'"`)
		}
	}
	m1, m2 := exports["DLOCK_SHAREDFS_M1"], exports["DLOCK_SHAREDFS_M2"]
	if m1 == "" || m2 == "" {
		down()
		return nil, nil, fmt.Errorf("%s up printed no mounts: %q", filepath.Base(script), out)
	}
	return []string{m1, m2}, down, nil
}

func rigDown(script, state string) {
	c := exec.Command("bash", script, "down", state)
	c.Stderr = os.Stderr
	c.Run()
}

// altFS measures every row on one filesystem.
func altFS(cfg altConfig, f *fsRun, tmp string, prog func(string, ...any)) {
	note := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		prog("  note: %s", msg)
		f.Notes = append(f.Notes, msg)
	}
	seq := 0
	path := func(what, impl string) []string {
		seq++
		out := make([]string, len(f.Dirs))
		for i, d := range f.Dirs {
			out[i] = filepath.Join(d, fmt.Sprintf("%s-%d-%s", what, seq, impl))
		}
		return out
	}

	if _, ok := nfsFS[f.Name]; ok {
		// In the qemu guests: the Go rows, then the correctness rows with
		// peers in the guests (fewer rounds at once: two small guests).
		rig := activeNFS
		altNFS(cfg, f, rig, prog, note)
		c := cfg
		c.parallel = min(cfg.parallel, 4)
		altCorrect(c, f, tmp, c.pick(nfsTuned), prog, note)
		return
	}
	// Uncontended, in one process on the first mount.
	ops := map[string]*op{}
	sizes := map[string]int{}
	var uncImpls []string
	if cfg.does("unc") {
		prog("uncontended: %d rounds", cfg.uncRounds)
	} else {
		cfg.uncRounds = 0
	}
	for _, impl := range cfg.pick(altUncontended) {
		if cfg.uncRounds == 0 {
			break
		}
		o, err := newOp(impl, f.Dirs[0], "")
		if err != nil {
			note("uncontended %s: %v", impl, err)
			continue
		}
		defer o.close()
		if o.note != "" {
			note("%s: %s", impl, o.note)
		}
		d, err := runBatchIn(o, 3, cfg.uncLimit)
		if err != nil {
			note("uncontended %s: %v", impl, err)
			continue
		}
		sizes[impl] = max(3, min(2000, int(cfg.uncTarget/max(d/3, time.Microsecond))))
		ops[impl] = o
		uncImpls = append(uncImpls, impl)
	}
	samples := map[string][]float64{}
	given := map[string]bool{} // gave up on: never asked again
	for r := range cfg.uncRounds {
		for _, impl := range rotate(uncImpls, r) {
			if given[impl] {
				continue
			}
			d, err := runBatchIn(ops[impl], sizes[impl], cfg.uncLimit)
			if errors.Is(err, errNoAnswer) {
				given[impl] = true
				delete(samples, impl)
			}
			if err != nil {
				note("uncontended %s: %v", impl, err)
				continue
			}
			samples[impl] = append(samples[impl], float64(d.Nanoseconds())/1e3/float64(sizes[impl]))
		}
	}
	for impl, v := range samples {
		slices.Sort(v)
		f.set("unc_us", impl, round3(quantile(v, 0.5)))
		// Their tuning only shortens the poll: uncontended, it is the same lock.
		if slices.Contains([]string{"portalocker", "filelock", "softfilelock", "softfilelease", "strictsoftfilelock", "lockbydir"}, impl) {
			f.set("unc_us", impl+"-tuned", round3(quantile(v, 0.5)))
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
	if f.Name == "sshfs-default" {
		// A name freed through one mount still answers EEXIST through the
		// other for about 20 s: a hand-off across them waits out the cache,
		// and the short trials below would see none.
		note("hand-off, throughput and server operations not measured: with sshfs's default caching a release through one mount is seen through the other only after its ~20 s attribute cache")
		cfg.rounds = 0
	}
	// Hand-off (2 processes, one on each mount) and throughput (8).
	hs := map[string][2][]float64{}
	tp := map[string][]float64{}
	for r := range cfg.rounds {
		for _, impl := range rotate(cfg.pick(altHandoff), r) {
			if !cfg.does("handoff") {
				break
			}
			if impl == implFloorWatch && f.Shared {
				continue // inotify sees nothing done through the other mount
			}
			prog("round %d/%d: hand-off, 2 processes, %s", r+1, cfg.rounds, impl)
			t := trial{impl: impl, paths: path("handoff", impl), mode: modeBaton, n: 2,
				hold: time.Millisecond, warm: cfg.warm, dur: cfg.dur, warn: warn}
			res, err := t.run()
			if err != nil {
				note("hand-off %s: %v", impl, err)
				continue
			}
			var lat []float64
			for _, w := range res {
				for _, ns := range w.Lat {
					lat = append(lat, float64(ns)/1e6)
				}
			}
			if len(lat) == 0 {
				note("hand-off %s: no hand-off within %v", impl, cfg.dur)
				continue
			}
			slices.Sort(lat)
			h := hs[impl]
			h[0], h[1] = append(h[0], quantile(lat, 0.5)), append(h[1], quantile(lat, 0.99))
			hs[impl] = h
		}
		for _, impl := range rotate(cfg.pick(altTuned), r) {
			if !cfg.does("throughput") {
				break
			}
			prog("round %d/%d: throughput, 8 processes, %s", r+1, cfg.rounds, impl)
			t := trial{impl: impl, paths: path("throughput", impl), mode: modeSpin, n: 8,
				warm: cfg.warm, dur: cfg.dur, warn: warn}
			res, err := t.run()
			if err != nil {
				note("throughput %s: %v", impl, err)
				continue
			}
			acq := 0
			for _, w := range res {
				acq += w.Acq
			}
			tp[impl] = append(tp[impl], float64(acq)/cfg.dur.Seconds())
		}
	}
	for impl, h := range hs {
		slices.Sort(h[0])
		slices.Sort(h[1])
		f.set("p50_ms", impl, round3(quantile(h[0], 0.5)))
		f.set("p99_ms", impl, round3(quantile(h[1], 0.5)))
	}
	for impl, v := range tp {
		slices.Sort(v)
		f.set("acq8", impl, round3(quantile(v, 0.5)))
	}

	// CPU per acquisition with a herd of waiters (local filesystems).
	if !f.Shared && cfg.does("herd") {
		for _, impl := range cfg.pick(altTuned) {
			prog("herd CPU, %d processes, %s", cfg.herdN, impl)
			t := trial{impl: impl, paths: path("herd", impl), mode: modeBaton, n: cfg.herdN,
				hold: time.Millisecond, warm: cfg.warm, dur: cfg.herdDur, warn: warn}
			res, err := t.run()
			if err != nil {
				note("herd %s: %v", impl, err)
				continue
			}
			var cpu int64
			acq := 0
			for _, w := range res {
				cpu += w.CPU
				acq += w.Acq
			}
			if acq > 0 {
				f.set("cpu_ms", impl, round3(float64(cpu)/1e6/float64(acq)))
			}
		}
	}

	// The hand-off from a waiter that has waited (shared filesystems):
	// holds drawn from waitHold, long against every poll interval, so that
	// a release falls anywhere in the waiter's poll. The 1 ms hold above
	// hands off mostly to a waiter whose first look is still under way
	// (a look through sshfs takes milliseconds), which no poll delays.
	if f.Shared && cfg.rounds > 0 && cfg.does("wait") {
		for _, impl := range cfg.pick(altWait) {
			prog("poll hand-off (holds %v-%v), 2 processes, %s", cfg.waitHold[0], cfg.waitHold[1], impl)
			dur := cfg.waitDur
			if f.Name == "glusterfs" {
				dur *= 2 // a release is seen through the other mount after up to a second
			}
			t := trial{impl: impl, paths: path("wait", impl), mode: modeBaton, n: 2,
				hold: cfg.waitHold[0], holdMax: cfg.waitHold[1], warm: cfg.warm, dur: dur, warn: warn}
			res, err := t.run()
			if err != nil {
				note("poll hand-off %s: %v", impl, err)
				continue
			}
			var lat []float64
			for _, w := range res {
				for _, ns := range w.Lat {
					lat = append(lat, float64(ns)/1e6)
				}
			}
			if len(lat) < 3 {
				note("poll hand-off %s: %d hand-offs within %v", impl, len(lat), dur)
				continue
			}
			slices.Sort(lat)
			f.set("wait_p50_ms", impl, round3(quantile(lat, 0.5)))
			f.set("wait_p99_ms", impl, round3(quantile(lat, 0.99)))
			f.set("wait_n", impl, float64(len(lat)))
			prog("  %d hand-offs: p50 %.3g ms, p99 %.3g ms, max %.3g ms", len(lat), quantile(lat, 0.5), quantile(lat, 0.99), lat[len(lat)-1])
		}
	}

	// Operations at the server: per uncontended acquire+release, and per
	// second of one waiter blocked on a lock held through the other mount.
	if f.Shared && cfg.rounds > 0 && cfg.does("ops") {
		for _, impl := range cfg.pick(altOps) {
			prog("server operations: %s", impl)
			c, err := newServerCounter(f)
			if err != nil {
				note("server operations: %v", err)
				break
			}
			if impl != implDlock5 && impl != implDlockPoll {
				o, err := newOp(impl, f.Dirs[0], "")
				if err != nil {
					note("server operations %s: %v", impl, err)
					continue
				}
				n := 20
				if impl == implDlockRun {
					n = 5
				}
				if _, err := runBatchIn(o, 1, cfg.uncLimit); err != nil { // the lock exists: the count is of acquisitions only
					o.close()
					note("server operations %s: %v", impl, err)
					continue
				}
				var cnt int
				var which string
				c.lock = "uncontended-" + impl // newOp's
				if err = c.begin(); err == nil {
					_, err = runBatchIn(o, n, cfg.uncLimit)
					var cerr error
					cnt, which, cerr = c.end()
					err = cmp(err, cerr)
				}
				o.close()
				if err != nil {
					note("server operations %s: %v", impl, err)
					continue
				}
				prog("  %d acquire+release: %d operations: %s", n, cnt, which)
				f.set("ops_acq", impl, round3(float64(cnt)/float64(n)))
			}
			t := trial{impl: impl, paths: path("opsidle", impl), n: 2, idle: true,
				warm: cfg.warm, dur: cfg.opsDur, warn: warn}
			c.lock = filepath.Base(t.paths[0])
			var cnt int
			var which string
			var cerr error
			t.window = func() func() {
				if cerr = c.begin(); cerr != nil {
					return func() {}
				}
				return func() { cnt, which, cerr = c.end() }
			}
			_, err = t.run()
			if err = cmp(err, cerr); err != nil {
				note("server operations (waiting) %s: %v", impl, err)
				continue
			}
			if c.counted < cfg.opsDur/4 {
				note("server operations (waiting) %s: counted for %v only", impl, c.counted)
				continue
			}
			prog("  waiting %v: %d operations: %s", c.counted.Round(time.Millisecond), cnt, which)
			f.set("ops_wait_s", impl, round3(float64(cnt)/c.counted.Seconds()))
		}
	}

	altCorrect(cfg, f, tmp, cfg.pick(altTuned), prog, note)
}

// altCorrect runs the correctness rows of impls on one filesystem: every
// implementation at once, rounds in parallel.
func altCorrect(cfg altConfig, f *fsRun, tmp string, impls []string, prog, note func(string, ...any)) {
	marks, err := os.MkdirTemp(tmp, "marks-")
	if err != nil {
		note("correctness: %v", err)
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	prog("correctness: counter (%d×%d), stale race (%d rounds), late release (%d rounds), %d rounds at once",
		cfg.cntProcs, cfg.cntIters, cfg.staleRounds, cfg.lateRounds, cfg.parallel)
	cstart := time.Now()
	// Every lock's counter and first rounds, then (ahead) the other rounds.
	var firsts sync.WaitGroup
	ahead := make(chan struct{})
	firsts.Add(len(impls))
	go func() { firsts.Wait(); close(ahead) }()
	for _, impl := range impls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cnt verdict // the counter's, if it ran
			if cfg.does("counter") {
				name := fmt.Sprintf("counter-%s", impl)
				done, lost, over, err := counterCheck(impl, f.Dirs, name, marks, cfg.cntProcs, cfg.cntIters, cfg.cntLimit)
				v := verdict{Bad: lost, Both: over, N: done, Cnt: true}
				if want := cfg.cntProcs * cfg.cntIters; done < want {
					v.Note = fmt.Sprintf("stopped after %v with %d of %d increments done", cfg.cntLimit, done, want)
				}
				if err != nil {
					v.Note = strings.TrimPrefix(v.Note+"; "+err.Error(), "; ")
				}
				if done == 0 {
					v.NA = "never acquired"
				}
				mu.Lock()
				f.check("counter", impl, v)
				mu.Unlock()
				cnt = v
			}
			var checks []*roundsCheck
			for _, c := range []struct {
				name   string
				rounds int
			}{{"stale", cfg.staleRounds}, {"late", cfg.lateRounds}} {
				if cfg.does(c.name) && c.rounds > 0 {
					checks = append(checks, &roundsCheck{cfg: cfg, which: c.name, impl: impl, rounds: c.rounds, dirs: f.Dirs, marks: marks})
				}
			}
			var ok []bool
			for _, c := range checks {
				switch {
				case cnt.bad():
					// Two were inside at once, or updates were lost: the
					// lock does not exclude here, whatever a round's
					// timing would say under load.
					c.v = verdict{NA: fmt.Sprintf("no exclusion to begin with: the counter had %d lost, %d both in", cnt.Bad, cnt.Both)}
					ok = append(ok, false)
				case cnt.NA != "":
					c.v = verdict{NA: "the counter never acquired it"}
					ok = append(ok, false)
				default:
					ok = append(ok, c.runFirst())
				}
			}
			firsts.Done()
			<-ahead
			for i, c := range checks {
				if ok[i] {
					c.runRest()
				}
				v := c.verdict()
				prog("  %s %s: %s in %v", c.which, impl, v, c.took.Round(time.Second))
				mu.Lock()
				f.check(c.which, impl, v)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	prog("correctness: %v", time.Since(cstart).Round(time.Second))
	// A lock whose counter went wrong did not exclude here: its speed
	// figures (and its defaults', the same lock) are marked too.
	for impl, v := range f.Checks["counter"] {
		if v.bad() {
			f.Viol[impl] = true
			f.Viol[strings.TrimSuffix(impl, "-tuned")] = true
		}
	}
	for _, c := range []string{"counter", "stale", "late"} {
		for _, impl := range impls {
			v := f.Checks[c][impl]
			prog("  %s %s: %s %s %s", c, impl, v, v.NA, v.Note)
		}
	}
}

// roundsCheck is the rounds of the stale race or the late release of one
// lock, each round on a lock of its own with processes of its own. The
// first round decides whether the lock can express the case at all
// (n/a): altFS runs every lock's first rounds together and only then the
// others, parallel at a time, so that the load of many rounds never
// decides an n/a. A later round that goes wrong (a waiter that did not
// get the lock in time under that load, say) is a failed round, said in
// the note.
type roundsCheck struct {
	cfg           altConfig
	which, impl   string
	rounds        int
	dirs          []string
	marks         string
	mu            sync.Mutex
	v             verdict
	lateErrs      int
	errs          []string
	took          time.Duration
	first, failed bool // the first round ran; it said n/a
}

// one runs round r; grace is how long past the stale time a waiter that
// has not got the lock counts as never getting it.
func (c *roundsCheck) one(r int, grace time.Duration) error {
	name := fmt.Sprintf("%s-%d-%s", c.which, r, c.impl)
	var out roundOut
	var err error
	if c.which == "stale" {
		out, err = staleRace(c.impl, c.dirs, name, c.marks, c.cfg.stale, 300*time.Millisecond, grace)
	} else {
		out, err = lateRelease(c.impl, c.dirs, name, c.cfg.stale, grace)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		return err
	}
	c.v.N++
	switch {
	case out.told:
		c.v.Told++
	case out.bad:
		c.v.Bad++
	}
	if out.story != "" {
		kind := "BAD"
		if out.told {
			kind = "told first"
		}
		story := fmt.Sprintf("round %d (%s): %s", r+1, kind, out.story)
		c.v.Rounds = append(c.v.Rounds, story)
		if c.cfg.progress != nil {
			fmt.Fprintf(c.cfg.progress, "  %s %s %s\n", c.which, c.impl, story)
		}
	}
	if out.lateErr != nil {
		c.lateErrs++
	}
	return nil
}

// runFirst runs the first round: false if the case is n/a for this lock.
func (c *roundsCheck) runFirst() bool {
	t0 := time.Now()
	defer func() { c.took += time.Since(t0) }()
	err := c.one(0, 3*time.Second)
	switch {
	case errors.Is(err, errNeverReclaims):
		c.v = verdict{NA: "a paused holder's lock is never reclaimed"}
	case errors.Is(err, errNoExclusion):
		c.v = verdict{NA: "no exclusion across the mounts to begin with"}
	case err != nil:
		c.errs = append(c.errs, "round 1: "+err.Error())
	}
	return c.v.NA == ""
}

// runRest runs the other rounds, parallel at a time.
func (c *roundsCheck) runRest() {
	t0 := time.Now()
	defer func() { c.took += time.Since(t0) }()
	sem := make(chan struct{}, max(1, c.cfg.parallel))
	var wg sync.WaitGroup
	for r := 1; r < c.rounds; r++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Rounds at once load the machine: more time before a waiter
			// that has not got the lock counts as never getting it.
			if err := c.one(r, 15*time.Second); err != nil {
				c.mu.Lock()
				c.errs = append(c.errs, fmt.Sprintf("round %d: %v", r+1, err))
				c.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func (c *roundsCheck) verdict() verdict {
	v := c.v
	v.Rounds = slices.Clone(v.Rounds)
	slices.SortStableFunc(v.Rounds, func(a, b string) int { return roundNo(a) - roundNo(b) })
	if c.which == "late" && v.N > 0 {
		v.Note = fmt.Sprintf("the late release reported an error %d times", c.lateErrs)
	}
	if len(c.errs) > 0 {
		v.Note = strings.TrimPrefix(v.Note+"; "+fmt.Sprintf("%d rounds failed, the first: %s", len(c.errs), c.errs[0]), "; ")
	}
	return v
}

// roundNo is the round number a story starts with ("round 7 (...").
func roundNo(story string) int {
	n, _ := strconv.Atoi(strings.Fields(strings.TrimPrefix(story, "round "))[0])
	return n
}

// runBatch runs n of o's operations.
func runBatch(o *op, n int) (time.Duration, error) {
	if o.batch != nil {
		return o.batch(context.Background(), n)
	}
	start := time.Now()
	for range n {
		if err := o.run(); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// errNoAnswer: an uncontended batch did not end within its limit.
var errNoAnswer = errors.New("no answer")

// runBatchIn is runBatch bounded by limit: a lock that never acquires
// (a peer stuck in its library, a mount that hangs) must not hang the
// run. A peer is killed then; an op of this process is left behind in
// its goroutine (its lock is never used again).
func runBatchIn(o *op, n int, limit time.Duration) (time.Duration, error) {
	type res struct {
		d   time.Duration
		err error
	}
	ch := make(chan res, 1)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	go func() {
		if o.batch != nil {
			d, err := o.batch(ctx, n)
			ch <- res{d, err}
			return
		}
		d, err := runBatch(o, n)
		ch <- res{d, err}
	}()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil && ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %d acquire+release not done within %v", errNoAnswer, n, limit)
		}
		return r.d, r.err
	case <-t.C:
		if o.abort != nil {
			o.abort()
		}
		return 0, fmt.Errorf("%w: %d acquire+release not done within %v", errNoAnswer, n, limit)
	}
}

// fsSyscalls are the system calls of the sftp server that are filesystem
// operations (SFTP requests), as opposed to its transport.
var fsSyscalls = map[string]bool{
	"mkdir": true, "mkdirat": true, "rmdir": true, "unlink": true, "unlinkat": true,
	"rename": true, "renameat": true, "renameat2": true, "stat": true, "lstat": true,
	"newfstatat": true, "statx": true, "open": true, "openat": true, "getdents64": true,
	"utimensat": true, "utimes": true, "fsync": true, "link": true, "linkat": true,
	"symlink": true, "symlinkat": true, "readlink": true, "readlinkat": true,
	"pread64": true, "pwrite64": true, "truncate": true, "ftruncate": true, "fchmod": true, "chmod": true,
	"fchmodat": true, "fchown": true, "chown": true, "fchownat": true, "lchown": true, "statfs": true, "fstatfs": true,
}

// serverCounter counts the filesystem operations a rig's server does
// between start and stop: the system calls of the sftp server's sessions
// that touch the filesystem (strace -c -f), or GlusterFS's own count of
// the file operations its bricks served (volume profile).
type serverCounter struct {
	// lock is the name of the lock counted: on sshfs only operations on
	// paths naming it (and on the directories above it) count.
	lock  string
	start func() error
	stop  func() (n int, which string, err error)
	// Between the moments start returned and stop was called: under load
	// the counter takes a while to start, so this can be well short of
	// the window it was started in.
	counted time.Duration
	began   time.Time
}

// begin starts counting; end stops and says what was counted.
func (c *serverCounter) begin() error {
	if err := c.start(); err != nil {
		return err
	}
	c.began = time.Now()
	return nil
}

func (c *serverCounter) end() (int, string, error) {
	c.counted = time.Since(c.began)
	return c.stop()
}

func newServerCounter(f *fsRun) (*serverCounter, error) {
	if f.Name == "glusterfs" {
		return glusterCounter(f.Rig)
	}
	b, err := os.ReadFile(filepath.Join(f.Rig, "sshd.pid"))
	if err != nil {
		return nil, err
	}
	root, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	out := filepath.Join(os.TempDir(), fmt.Sprintf("dlockbench-strace-%d.txt", os.Getpid()))
	// The server's side of this run's directory (sharedfs.sh exports
	// STATE/export): only operations on it and on the lock counted (c.lock)
	// are counted, not those of another process that happens to walk the
	// mounts meanwhile (a find, a du of /tmp), which can be thousands.
	export := filepath.Join(f.Rig, "export")
	sub := filepath.Join(export, filepath.Base(f.Dirs[0]))
	var st *exec.Cmd
	var stderr bytes.Buffer
	c := &serverCounter{}
	c.start = func() error {
		pids := descendants(root)
		if len(pids) == 0 {
			return fmt.Errorf("no sftp session under sshd %d", root)
		}
		args := []string{"-f", "-qq", "-e", "signal=none", "-e", "trace=" + strings.Join(slices.Sorted(maps.Keys(fsSyscalls)), ",") + ",close", "-o", out}
		for _, p := range pids {
			args = append(args, "-p", strconv.Itoa(p))
		}
		st = exec.Command("strace", args...)
		stderr.Reset()
		st.Stderr = &stderr
		if err := st.Start(); err != nil {
			return err
		}
		// strace opens its output, then attaches: under load that can
		// take a while, and a SIGINT before it would count nothing.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(out); err == nil {
				break
			}
			if time.Now().After(deadline) {
				st.Process.Kill()
				st.Wait()
				return fmt.Errorf("strace did not start within 10s: %s", strings.TrimSpace(stderr.String()))
			}
		}
		time.Sleep(200 * time.Millisecond) // attached
		return nil
	}
	c.stop = func() (int, string, error) {
		st.Process.Signal(syscall.SIGINT)
		st.Wait()
		defer os.Remove(out)
		lock := c.lock
		keep := func(p string) bool {
			if p == export || p == sub {
				return true
			}
			rest, ok := strings.CutPrefix(p, sub+"/")
			return ok && lock != "" && strings.Contains(rest, lock)
		}
		n, which, err := parseStraceCalls(out, keep)
		if err != nil {
			err = fmt.Errorf("strace %v: %v: %s", st.Args[1:], err, strings.TrimSpace(stderr.String()))
		}
		return n, which, err
	}
	return c, nil
}

// glusterCounter reads the bricks' counts of file operations of the
// distribute volume of the glusterfs.sh rig in state.
func glusterCounter(state string) (*serverCounter, error) {
	sock := filepath.Join(state, "glusterd", "run", "glusterd.socket")
	const vol = "gluster-dlock-distribute"
	cli := func(args ...string) ([]byte, error) {
		out, err := exec.Command("gluster", append([]string{"--glusterd-sock=" + sock, "--mode=script", "volume", "profile", vol}, args...)...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("gluster volume profile %s %s: %v: %s", vol, strings.Join(args, " "), err, out)
		}
		return out, nil
	}
	if out, err := cli("info", "incremental"); err != nil || bytes.Contains(out, []byte("not started")) {
		if _, err := cli("start"); err != nil {
			return nil, err
		}
	}
	return &serverCounter{
		start: func() error { _, err := cli("info", "incremental"); return err },
		stop: func() (int, string, error) {
			out, err := cli("info", "incremental")
			if err != nil {
				return 0, "", err
			}
			return parseGlusterProfile(out)
		},
	}, nil
}

// parseGlusterProfile sums the calls of `volume profile VOL info
// incremental` over the bricks, leaving out what a client sends when it
// forgets an inode or closes a file (FORGET, RELEASE, RELEASEDIR).
func parseGlusterProfile(out []byte) (int, string, error) {
	calls := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		fop := f[len(f)-1]
		n, err := strconv.Atoi(f[len(f)-2])
		if err != nil || strings.ToUpper(fop) != fop || fop == "FORGET" || fop == "RELEASE" || fop == "RELEASEDIR" {
			continue
		}
		calls[fop] += n
	}
	total := 0
	var parts []string
	for _, fop := range slices.Sorted(maps.Keys(calls)) {
		total += calls[fop]
		parts = append(parts, fmt.Sprintf("%s %d", fop, calls[fop]))
	}
	return total, strings.Join(parts, ", "), nil
}

// parseStraceCalls counts the filesystem system calls in strace's output
// (strace -f -o NAME, one call a line, or split into "<unfinished ...>"
// and "<... resumed>" lines) whose path keep accepts: a path argument,
// or for a call on a descriptor (getdents64 of a listing, fstat of an
// open file) the path it was opened with.
func parseStraceCalls(name string, keep func(path string) bool) (int, string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, "", err
	}
	type key struct{ pid, fd string }
	fds := map[key]string{}
	pendingOpen := map[string]string{} // pid -> path of an unfinished openat
	calls := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		pid, rest, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if r, ok := strings.CutPrefix(rest, "<... "); ok {
			// A resumed call: only an openat's result matters (its fd).
			if strings.HasPrefix(r, "openat resumed>") || strings.HasPrefix(r, "open resumed>") {
				if p, ok := pendingOpen[pid]; ok {
					if fd := straceResult(r); fd != "" {
						fds[key{pid, fd}] = p
					}
					delete(pendingOpen, pid)
				}
			}
			continue
		}
		i := strings.IndexByte(rest, '(')
		if i <= 0 {
			continue
		}
		call, args := rest[:i], rest[i+1:]
		paths := quoted(args)
		first, _, _ := strings.Cut(args, ",")
		first = strings.TrimSuffix(strings.TrimSpace(first), ")")
		if call == "close" {
			delete(fds, key{pid, first})
			continue
		}
		if !fsSyscalls[call] {
			continue
		}
		// A call on a descriptor: its path is the one it was opened with.
		if len(paths) == 0 || (len(paths) == 1 && paths[0] == "") {
			paths = []string{fds[key{pid, first}]}
		}
		if call == "openat" || call == "open" {
			if len(paths) > 0 {
				if strings.Contains(rest, "<unfinished ...>") {
					pendingOpen[pid] = paths[0]
				} else if fd := straceResult(rest); fd != "" {
					fds[key{pid, fd}] = paths[0]
				}
			}
		}
		if slices.ContainsFunc(paths, keep) {
			calls[call]++
		}
	}
	n := 0
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(calls)) {
		n += calls[c]
		parts = append(parts, fmt.Sprintf("%s %d", c, calls[c]))
	}
	return n, strings.Join(parts, ", "), nil
}

// straceResult is a call's return value when it is a descriptor ("= 5").
func straceResult(line string) string {
	i := strings.LastIndex(line, " = ")
	if i < 0 {
		return ""
	}
	r, _, _ := strings.Cut(line[i+3:], " ")
	if _, err := strconv.Atoi(r); err != nil || strings.HasPrefix(r, "-") {
		return ""
	}
	return r
}

// quoted are the double-quoted strings of strace's arguments.
func quoted(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return out
		}
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(s) {
			return out
		}
		out = append(out, s[i+1:j])
		s = s[j+1:]
	}
}

// descendants lists the processes below pid.
func descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q != 0; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
