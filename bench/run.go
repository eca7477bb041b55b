package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Result is one line of the -json output: the median of a metric.
type Result struct {
	Metric string  `json:"metric"`
	Impl   string  `json:"impl"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
}

// report is everything a run found.
type report struct {
	dir, fs  string
	started  time.Time
	elapsed  time.Duration
	results  []Result
	samples  map[string]int // metric/impl: how many samples the median is of
	warnings []string
}

type sampler struct {
	mu    sync.Mutex
	vals  map[[2]string][]float64
	units map[string]string
	order []string
}

func (s *sampler) add(metric, impl, unit string, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{metric, impl}
	if _, ok := s.units[metric]; !ok {
		s.units[metric] = unit
		s.order = append(s.order, metric)
	}
	s.vals[k] = append(s.vals[k], v)
}

// rotate gives the implementations in a different order each round, so
// that no implementation always runs right after the same other one.
func rotate(impls []string, r int) []string {
	n := len(impls)
	out := make([]string, n)
	for i := range impls {
		out[i] = impls[(i+r)%n]
	}
	return out
}

func run(cfg config) (*report, error) {
	base, err := os.MkdirTemp(cfg.dir, "dlockbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(base)
	rep := &report{dir: cfg.dir, fs: fsName(cfg.dir), started: time.Now(), samples: map[string]int{}}
	s := &sampler{vals: map[[2]string][]float64{}, units: map[string]string{}}
	prog := func(format string, args ...any) {
		if cfg.progress != nil {
			fmt.Fprintf(cfg.progress, format+"\n", args...)
		}
	}
	var warnMu sync.Mutex
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		prog("  warning: %s", msg)
		warnMu.Lock()
		rep.warnings = append(rep.warnings, msg)
		warnMu.Unlock()
	}

	impls := contendedImpls()
	if cfg.impls != "" {
		impls = slices.DeleteFunc(impls, func(s string) bool { return !slices.Contains(strings.Split(cfg.impls, ","), s) })
	}

	// etcd runs in the uncontended and hand-off groups only, against one
	// etcd for the whole run: embedded in this process unless an endpoint
	// was given.
	useEtcd := cfg.etcd && (cfg.impls == "" || slices.Contains(strings.Split(cfg.impls, ","), implEtcd)) &&
		(cfg.runs("uncontended") || cfg.runs("handoff"))
	etcdURL := ""
	if useEtcd {
		if cfg.etcdEndpoint != "" {
			etcdURL = cfg.etcdEndpoint
			prog("etcd: using %s", etcdURL)
		} else {
			start := time.Now()
			u, stop, err := startEtcd()
			if err != nil {
				return nil, err
			}
			defer stop()
			etcdURL = u
			prog("etcd: embedded, at %s, ready in %v", etcdURL, time.Since(start).Round(time.Millisecond))
		}
	}

	// Uncontended: batches of ops, implementations interleaved.
	if !cfg.runs("uncontended") {
		cfg.uncRounds = 0
	}
	uncImpls := []string{implDlock, implDlockPoll, implFlock, implFlockFD, implFloor, implFloorChecked, implFloorMkdir}
	if useEtcd {
		uncImpls = append(uncImpls, implEtcd)
	}
	// etcd's operation is a few round trips to a server: about a hundred
	// times slower than the others, so its batches are ten times smaller.
	batch := func(impl string) int {
		if impl == implEtcd {
			return max(cfg.uncOps/10, 5)
		}
		return cfg.uncOps
	}
	prog("uncontended: %d rounds of %d ops (etcd: %d)", cfg.uncRounds, cfg.uncOps, batch(implEtcd))
	ops := map[string]*op{}
	for _, impl := range uncImpls {
		o, err := newOp(impl, base, etcdURL)
		if err != nil {
			return nil, err
		}
		defer o.close()
		if o.note != "" {
			warn("%s: %s", impl, o.note)
		}
		for range max(batch(impl)/10, 5) { // warm up; dlock creates its directory here
			if err := o.run(); err != nil {
				return nil, fmt.Errorf("%s: %w", impl, err)
			}
		}
		ops[impl] = o
	}
	for r := range cfg.uncRounds {
		for _, impl := range rotate(uncImpls, r) {
			o, n := ops[impl], batch(impl)
			start := time.Now()
			for range n {
				if err := o.run(); err != nil {
					return nil, fmt.Errorf("%s: %w", impl, err)
				}
			}
			s.add("uncontended_ns", impl, "ns", float64(time.Since(start).Nanoseconds())/float64(n))
		}
	}

	handoffImpls := slices.Clip(impls)
	if cfg.impls == "" || slices.Contains(strings.Split(cfg.impls, ","), implFloorWatch) {
		handoffImpls = append(handoffImpls, implFloorWatch)
	}
	if useEtcd {
		handoffImpls = append(handoffImpls, implEtcd)
	}
	lockPath := func(what, impl string, n int) string {
		return filepath.Join(base, fmt.Sprintf("%s-%d-%s", what, n, impl))
	}
	noWatch := false
	check := func(res []workerResult) {
		for _, r := range res {
			noWatch = noWatch || r.NoWatch
		}
	}

	// Handoff latency and throughput.
	for r := range cfg.rounds {
		for _, n := range cfg.handoffN {
			for _, impl := range rotate(handoffImpls, r) {
				if !cfg.runs("handoff") {
					break
				}
				prog("round %d/%d: handoff, %d processes, %s", r+1, cfg.rounds, n, impl)
				t := trial{impl: impl, path: lockPath("handoff", impl, n), mode: modeBaton, n: n,
					hold: cfg.hold, warm: cfg.warm, warn: warn, dur: cfg.dur, etcd: etcdURL}
				t.profile = firstRound(r, cfg.profile)
				res, err := t.run()
				if err != nil {
					return nil, err
				}
				check(res)
				var lat []float64
				var cpu, csw int64
				for _, w := range res {
					cpu, csw = cpu+w.CPU, csw+w.CSW
					for _, ns := range w.Lat {
						lat = append(lat, float64(ns)/1e3)
					}
				}
				if len(lat) == 0 {
					return nil, fmt.Errorf("%s: no handoff in %v with %d processes", impl, cfg.dur, n)
				}
				slices.Sort(lat)
				prog("  %d hand-offs; per hand-off, all processes: %v CPU, %.1f context switches",
					len(lat), (time.Duration(cpu) / time.Duration(len(lat))).Round(time.Microsecond), float64(csw)/float64(len(lat)))
				s.add(fmt.Sprintf("handoff_p50_us_%d", n), impl, "us", quantile(lat, 0.50))
				s.add(fmt.Sprintf("handoff_p99_us_%d", n), impl, "us", quantile(lat, 0.99))
			}
		}
		for _, n := range cfg.handoffN {
			for _, impl := range rotate(impls, r) {
				if !cfg.runs("throughput") {
					break
				}
				prog("round %d/%d: throughput, %d processes, %s", r+1, cfg.rounds, n, impl)
				t := trial{impl: impl, path: lockPath("throughput", impl, n), mode: modeSpin, n: n,
					warm: cfg.warm, warn: warn, dur: cfg.dur}
				t.profile = firstRound(r, cfg.profile)
				res, err := t.run()
				if err != nil {
					return nil, err
				}
				check(res)
				acq := 0
				for _, w := range res {
					acq += w.Acq
				}
				prog("  %d acquisitions", acq)
				s.add(fmt.Sprintf("acq_per_s_%d", n), impl, "acq/s", float64(acq)/cfg.dur.Seconds())
			}
		}
	}

	// CPU per handoff with a herd of waiters.
	if !cfg.runs("herd") {
		cfg.herdRounds = 0
	}
	for r := range cfg.herdRounds {
		for _, n := range cfg.herdN {
			for _, impl := range rotate(impls, r) {
				prog("round %d/%d: herd CPU, %d processes, %s", r+1, cfg.herdRounds, n, impl)
				t := trial{impl: impl, path: lockPath("herd", impl, n), mode: modeBaton, n: n,
					hold: cfg.hold, warm: cfg.warm, warn: warn, dur: cfg.herdDur}
				t.profile = firstRound(r, cfg.profile)
				res, err := t.run()
				if err != nil {
					return nil, err
				}
				check(res)
				var cpu, csw int64
				acq := 0
				for _, w := range res {
					cpu, csw = cpu+w.CPU, csw+w.CSW
					acq += w.Acq
				}
				if acq == 0 {
					return nil, fmt.Errorf("%s: no acquisition in %v with %d processes", impl, cfg.herdDur, n)
				}
				prog("  %d acquisitions, %v CPU, %.0f context switches per acquisition", acq, time.Duration(cpu).Round(time.Millisecond), float64(csw)/float64(acq))
				s.add(fmt.Sprintf("herd_cpu_us_%d", n), impl, "us", float64(cpu)/1e3/float64(acq))
			}
		}
	}

	// Idle waiter: all implementations at once, since nothing runs.
	if !cfg.runs("idle") {
		cfg.idleRounds = 0
	}
	for r := range cfg.idleRounds {
		prog("round %d/%d: idle waiter for %v, all implementations at once", r+1, cfg.idleRounds, cfg.idleDur)
		var wg sync.WaitGroup
		errs := make([]error, len(impls))
		for i, impl := range impls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := trial{impl: impl, path: lockPath("idle", impl, 2), n: 2, idle: true,
					warm: cfg.warm, warn: warn, dur: cfg.idleDur}
				t.profile = firstRound(r, cfg.profile)
				res, err := t.run()
				if err != nil {
					errs[i] = err
					return
				}
				check(res)
				per5s := float64(res[1].CPU) / 1e6 * (5 * time.Second).Seconds() / cfg.idleDur.Seconds()
				s.add("idle_cpu_ms", impl, "ms", per5s)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
	}
	if noWatch {
		rep.warnings = append(rep.warnings, "some dlock workers could not create an inotify instance (fs.inotify.max_user_instances): they waited by polling only")
	}

	for _, m := range s.order {
		for _, impl := range []string{implDlock, implDlockPoll, implFlock, implFlockFD, implFloor, implFloorChecked, implFloorMkdir, implFloorWatch, implEtcd} {
			v, ok := s.vals[[2]string{m, impl}]
			if !ok {
				continue
			}
			slices.Sort(v)
			rep.results = append(rep.results, Result{Metric: m, Impl: impl, Value: round3(quantile(v, 0.5)), Unit: s.units[m]})
			rep.samples[m+"/"+impl] = len(v)
		}
	}
	rep.elapsed = time.Since(rep.started)
	return rep, nil
}

// firstRound is profile in round 0, else "": profiles cover one round.
func firstRound(r int, profile string) string {
	if r == 0 {
		return profile
	}
	return ""
}

// runs tells whether the group of metrics is to be measured.
func (c config) runs(group string) bool {
	return c.only == "" || slices.Contains(strings.Split(c.only, ","), group)
}

// quantile of sorted values, interpolating between neighbours.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// round3 keeps three significant digits.
func round3(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

// fsName names the filesystem type of dir.
func fsName(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch uint32(st.Type) {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// machine describes the host in one line.
func machine() string {
	var u unix.Utsname
	unix.Uname(&u)
	cpu := "cpu"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s %s, %d × %s, %s", unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
		runtime.NumCPU(), cpu, runtime.Version())
}
