package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	maybeWorker() // worker processes are this test binary run again
	maybePeer()
	os.Exit(m.Run())
}

// TestTiny runs the whole harness with tiny sizes and checks that every
// metric came out for every implementation, and that the outputs render.
func TestTiny(t *testing.T) {
	cfg := config{
		dir:       t.TempDir(),
		uncRounds: 3, uncOps: 20,
		rounds: 1, herdRounds: 1, idleRounds: 1,
		warm: 100 * time.Millisecond, dur: 200 * time.Millisecond,
		herdDur: 200 * time.Millisecond, idleDur: 300 * time.Millisecond,
		hold:     time.Millisecond,
		handoffN: []int{2}, herdN: []int{3},
		etcd: true,
	}
	rep, err := run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"uncontended_ns":   {implDlock, implFlock, implFlockFD, implFloor, implFloorChecked, implFloorMkdir, implEtcd},
		"handoff_p50_us_2": {implDlock, implFlock, implEtcd},
		"handoff_p99_us_2": {implDlock, implFlock, implEtcd},
		"acq_per_s_2":      {implDlock, implFlock},
		"herd_cpu_us_3":    {implDlock, implFlock},
		"idle_cpu_ms":      {implDlock, implFlock},
	}
	for _, x := range rep.results {
		if x.Impl == implEtcd && !strings.HasPrefix(x.Metric, "uncontended_") && !strings.HasPrefix(x.Metric, "handoff_") {
			t.Errorf("etcd measured for %s", x.Metric)
		}
	}
	seen := map[string]bool{}
	for _, x := range rep.results {
		if k := x.Metric + "/" + x.Impl; seen[k] {
			t.Errorf("%s twice in the results", k)
		} else {
			seen[k] = true
		}
	}
	for m, impls := range want {
		for _, impl := range impls {
			v, ok := rep.value(m, impl)
			if !ok || !(v >= 0) {
				t.Errorf("%s/%s: %v, %v", m, impl, v, ok)
			}
			if m != "idle_cpu_ms" && v <= 0 {
				t.Errorf("%s/%s = %v, want > 0", m, impl, v)
			}
		}
	}

	var js bytes.Buffer
	if err := writeJSON(&js, rep.results); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, r := range back {
		for _, k := range []string{"metric", "impl", "value", "unit"} {
			if _, ok := r[k]; !ok {
				t.Fatalf("JSON result %v lacks %q", r, k)
			}
		}
	}
	var txt bytes.Buffer
	writeText(&txt, rep)
	for _, s := range []string{"uncontended_ns", "×flock", "targets:", "dlock-poll", "etcd"} {
		if !strings.Contains(txt.String(), s) {
			t.Errorf("text output lacks %q:\n%s", s, txt.String())
		}
	}
	svg := filepath.Join(t.TempDir(), "r.svg")
	if err := writeSVGFile(svg, rep); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(svg); !bytes.HasPrefix(b, []byte("<svg")) || !bytes.HasSuffix(b, []byte("</svg>\n")) {
		t.Errorf("bad SVG: %.80s", b)
	}
	t.Log("\n" + txt.String())
}

func TestQuantile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5}
	if q := quantile(v, 0.5); q != 3 {
		t.Errorf("median = %v", q)
	}
	if q := quantile(v, 0.99); q < 4.9 || q > 5 {
		t.Errorf("p99 = %v", q)
	}
	if r := round3(123456); r != 123000 {
		t.Errorf("round3 = %v", r)
	}
}

// BenchmarkUncontended is the uncontended_ns metric as a Go benchmark, for
// profiling: go test -bench Uncontended -cpuprofile cpu.prof
func BenchmarkUncontended(b *testing.B) {
	for _, impl := range []string{implDlock, implFlock, implFlockFD, implFloor, implFloorChecked, implFloorMkdir} {
		b.Run(impl, func(b *testing.B) {
			o, err := newOp(impl, b.TempDir(), "")
			if err != nil {
				b.Fatal(err)
			}
			defer o.close()
			for b.Loop() {
				if err := o.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAlternativesTiny runs -alternatives on tmpfs with tiny sizes: every
// peer starts, takes part in every row, and the outputs are written. It
// needs the peers installed (.ci/run does it; bench/README.md says how).
func TestAlternativesTiny(t *testing.T) {
	if _, err := os.Stat("peers/node/node_modules/proper-lockfile"); err != nil {
		t.Skip("proper-lockfile not installed (cd peers/node && npm ci): skipping the alternatives")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import portalocker, locket, filelock").Run(); err != nil {
		t.Skip("python3-portalocker, python3-locket, python3-filelock not installed: skipping the alternatives")
	}
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		t.Skip("no /dev/shm")
	}
	cfg := altConfig{quick: true, fss: []string{"tmpfs"}, repo: "..", rigState: filepath.Join(t.TempDir(), "rig"),
		uncRounds: 2, uncTarget: 5 * time.Millisecond, rounds: 1,
		warm: 100 * time.Millisecond, dur: 300 * time.Millisecond, herdDur: 300 * time.Millisecond,
		opsDur: 300 * time.Millisecond, cntProcs: 2, cntIters: 5, cntLimit: 20 * time.Second,
		staleRounds: 20, lateRounds: 20, parallel: 10, stale: 2 * time.Second, herdN: 4,
		waitHold: [2]time.Duration{20 * time.Millisecond, 60 * time.Millisecond}, waitDur: 500 * time.Millisecond}
	rep, err := runAlternatives(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := rep.FS[0]
	absent := func(impl string) bool { return slices.Contains(newFilelock, impl) && !newFilelockHere() }
	for _, impl := range altHandoff {
		if absent(impl) {
			continue
		}
		if _, ok := f.Metrics["p50_ms"][impl]; !ok {
			t.Errorf("no hand-off figure for %s; notes: %q", impl, f.Notes)
		}
	}
	for _, impl := range altTuned {
		if absent(impl) {
			continue
		}
		if v, ok := f.Checks["counter"][impl]; !ok || v.N == 0 || v.bad() {
			t.Errorf("counter %s on tmpfs: %v (%s)", impl, v, v.Note)
		}
		for _, c := range []string{"stale", "late"} {
			if _, ok := f.Checks[c][impl]; !ok {
				t.Errorf("no %s verdict for %s", c, impl)
			}
		}
	}
	// dlock and its CLI: every round ran, none went wrong.
	for _, c := range []string{"stale", "late"} {
		for _, impl := range []string{implDlock, implDlockRun} {
			if v := f.Checks[c][impl]; v.N != 20 || v.bad() {
				t.Errorf("%s %s on tmpfs: %v %s %s", c, impl, v, v.NA, v.Note)
			}
		}
	}
	// Locks that reclaim must have run the rounds (a round that failed
	// under the load of the others is in the note); kernel locks cannot.
	for _, c := range []string{"stale", "late"} {
		for _, impl := range []string{"lockbydir-tuned", "proper-lockfile-tuned"} {
			if v := f.Checks[c][impl]; v.NA != "" || v.N == 0 {
				t.Errorf("%s %s on tmpfs: %v %s %s", c, impl, v, v.NA, v.Note)
			}
		}
		if v := f.Checks[c][implFlock]; v.NA == "" {
			t.Errorf("%s flock on tmpfs: %v, want n/a", c, v)
		}
	}
	dir := t.TempDir()
	if err := writeAlternatives(dir, rep); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "alternatives.md"))
	for _, s := range []string{"## tmpfs", "`proper-lockfile-tuned`", "`lockbydir`", "Versions:"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("alternatives.md lacks %q", s)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "alternatives.svg")); !bytes.HasPrefix(b, []byte("<svg")) {
		t.Errorf("bad SVG: %.80s", b)
	}
	t.Logf("\n%s", md)
}
