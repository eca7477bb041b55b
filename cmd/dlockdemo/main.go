// Command dlockdemo shows a dlock lock at work. With no arguments it makes
// a temporary directory and starts several worker processes (itself, run
// again) that compete for one lock to increment a shared counter file with
// a slow, non-atomic read-modify-write. One worker is killed with SIGKILL
// while it holds the lock, and the lock is reclaimed at once; another stops
// itself (SIGSTOP) while holding, the lock is reclaimed after TIMEOUT, and
// when it is continued its late write is refused by the fence and its
// Unlock reports ErrLost. On a terminal a live timeline shows every
// worker; without one, the story (the kill, the stop, the reclaims, the
// refused write) is printed line by line, and every critical section only
// with -v. A summary counts critical sections, overlaps, lost updates and
// hand-off latency.
//
//	go run ./cmd/dlockdemo            # the lock at work (about 15 seconds)
//	go run ./cmd/dlockdemo -nolock    # the same workload without the lock
//	go run ./cmd/dlockdemo -dir /mnt/nfs -svg timeline.svg
//
// The exit status is 1 if a locked run saw an overlap or a wrong counter.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv(roleEnv) == "worker" {
		os.Exit(worker(os.Args[1:]))
	}
	os.Exit(parent(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	workers, rounds int
	dir, svg        string
	timeout, work   time.Duration
	nolock, plain   bool
	verbose         bool
}

// parent is the demo: it starts the workers, follows their events, and
// says what happened.
func parent(args []string, stdout *os.File, stderr io.Writer) int {
	cfg, code, ok := parseConfig(args, stdout, stderr)
	if !ok {
		return code
	}
	base := cfg.dir
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "dlockdemo-")
	if err != nil {
		fmt.Fprintf(stderr, "dlockdemo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := writeCounter(filepath.Join(dir, "counter"), 0, 0); err != nil {
		fmt.Fprintf(stderr, "dlockdemo: %v\n", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "dlockdemo: cannot re-run myself: %v\n", err)
		return 1
	}

	d := newDemo(cfg, dir, stdout, stderr)
	d.cols = func() int { return termWidth(stdout) }
	// The scenes: worker 1 is killed holding the lock, worker 2 stops
	// itself holding it (both only with the lock, and enough workers).
	if !cfg.nolock && cfg.workers >= 2 {
		d.killVictim = 1
	}
	if !cfg.nolock && cfg.workers >= 3 && canStop {
		d.stopVictim = 2
	}
	events := make(chan event, 1024)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	d.t0 = time.Now()
	if !d.startWorkers(exe, dir, events) {
		return 1
	}
	d.header()
	if code, ok := d.follow(events, sigs); !ok {
		return code
	}
	return d.report()
}

// parseConfig parses the demo's command line. Unless ok, the demo exits
// with code.
func parseConfig(args []string, stdout *os.File, stderr io.Writer) (cfg config, code int, ok bool) {
	fs := flag.NewFlagSet("dlockdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.workers, "workers", 6, "worker processes competing for the lock")
	fs.IntVar(&cfg.rounds, "rounds", 50, "critical sections per worker, on average: the run ends after workers x rounds (and the scenes)")
	fs.StringVar(&cfg.dir, "dir", "", "where to make the demo's directory (default: the system's temporary directory); try /dev/shm or a shared mount")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Second, "the lock's `TIMEOUT`: how long a stopped holder keeps it")
	fs.DurationVar(&cfg.work, "work", 30*time.Millisecond, "time inside each critical section, between reading and writing the counter")
	fs.BoolVar(&cfg.nolock, "nolock", false, "run the same workload without the lock, to see lost updates and overlaps")
	fs.StringVar(&cfg.svg, "svg", "", "save the timeline as an SVG picture in `FILE`")
	fs.BoolVar(&cfg.plain, "plain", false, "print plain lines even on a terminal (the default without one)")
	fs.BoolVar(&cfg.verbose, "v", false, "with plain lines, print every critical section, not only the story")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: dlockdemo [flags]

Starts worker processes that compete for one lock to increment a shared
counter, kills one while it holds the lock, stops another past TIMEOUT, and
shows a timeline (on a terminal; plain lines of the story without one) and a
summary. The exit status is 1 if a locked run shows an overlap of critical
sections or a wrong counter.

Examples:
  dlockdemo                          # 6 workers, about 15 seconds
  dlockdemo -nolock                  # the same without the lock: lost updates
  dlockdemo -v | less                # every critical section, line by line
  dlockdemo -dir /mnt/nfs/tmp        # on a shared filesystem
  dlockdemo -workers 3 -rounds 5 -timeout 500ms -svg timeline.svg

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return cfg, 0, false
		}
		return cfg, 2, false
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "dlockdemo: unexpected arguments %q\n", fs.Args())
		return cfg, 2, false
	case cfg.workers < 1 || cfg.rounds < 1:
		fmt.Fprintln(stderr, "dlockdemo: -workers and -rounds must be at least 1")
		return cfg, 2, false
	case cfg.timeout <= 0 || cfg.work < 0:
		fmt.Fprintln(stderr, "dlockdemo: -timeout must be positive and -work not negative")
		return cfg, 2, false
	}
	if fi, err := stdout.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		cfg.plain = true
	}
	return cfg, 0, true
}

// startWorkers starts the workers, the victims of the scenes with their
// flags, each sending its events to events.
func (d *demo) startWorkers(exe, dir string, events chan<- event) bool {
	cfg, stderr := d.cfg, d.errOut
	for i := range cfg.workers {
		args := []string{"-dir", dir, "-timeout", cfg.timeout.String(), "-work", cfg.work.String()}
		switch {
		case cfg.nolock:
			args = append(args, "-nolock")
		case i == d.killVictim:
			args = append(args, "-kill")
		case i == d.stopVictim:
			args = append(args, "-stop")
		}
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), roleEnv+"=worker")
		cmd.Stderr = stderr
		out, err := cmd.StdoutPipe()
		if err == nil {
			// Never written, closed when we exit: tells a worker we are gone.
			_, err = cmd.StdinPipe()
		}
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			fmt.Fprintf(stderr, "dlockdemo: starting worker %d: %v\n", i, err)
			d.killAll()
			return false
		}
		d.w[i].cmd = cmd.Process
		go readEvents(i, cmd, out, events)
	}
	return true
}

// follow follows the workers' events until every worker has ended; unless
// ok (a signal, the workers' deadline), the demo exits with code.
func (d *demo) follow(events <-chan event, sigs <-chan os.Signal) (code int, ok bool) {
	cfg, stderr := d.cfg, d.errOut
	var tick <-chan time.Time
	if !cfg.plain {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	// Generous: the work itself, plus a stopped holder's TIMEOUT.
	deadline := time.After(2*time.Minute + 4*time.Duration(cfg.workers*cfg.rounds)*(cfg.work+5*time.Millisecond) + 5*cfg.timeout)
	for live := cfg.workers; live > 0; {
		select {
		case ev := <-events:
			if ev.kind == "eof" {
				live--
			}
			d.handle(ev)
		case <-tick:
			d.render(time.Now(), false)
		case <-d.contTimer:
			d.resumeStopped("nobody reclaimed the lock")
		case <-d.sceneTimer:
			d.sceneTimer = nil
			d.finish("the scenes did not happen in time")
		case sig := <-sigs:
			d.killAll()
			fmt.Fprintf(stderr, "\ndlockdemo: %v: workers killed\n", sig)
			return 130, false
		case <-deadline:
			d.killAll()
			fmt.Fprintln(stderr, "dlockdemo: the workers did not finish in time: killed them")
			return 1, false
		}
	}
	return 0, true
}

// report draws the end of the timeline and prints the summary (and saves
// the SVG picture): 1 if a locked run went wrong.
func (d *demo) report() int {
	cfg, stdout, stderr := d.cfg, d.out, d.errOut
	end := time.Now()
	if !cfg.plain {
		d.render(end, true)
	}
	r := d.results(end)
	d.tellFirstOverlap(r)
	ok := d.summary(end, r)
	if cfg.svg != "" {
		if err := os.WriteFile(cfg.svg, []byte(d.svg(end, r)), 0o644); err != nil {
			fmt.Fprintf(stderr, "dlockdemo: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "timeline saved in %s\n", cfg.svg)
	}
	if !ok {
		return 1
	}
	return 0
}

// event is one line from a worker, or the end of its output ("eof").
type event struct {
	w    int
	t    time.Time
	kind string
	arg  string
	code int // exit status, for eof
}

func readEvents(w int, cmd *exec.Cmd, out io.Reader, events chan<- event) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		ts, rest, _ := strings.Cut(sc.Text(), " ")
		kind, arg, _ := strings.Cut(rest, " ")
		nano, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			events <- event{w: w, t: time.Now(), kind: "error", arg: "bad event line " + strconv.Quote(sc.Text())}
			continue
		}
		events <- event{w: w, t: time.Unix(0, nano), kind: kind, arg: arg}
	}
	cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	events <- event{w: w, t: time.Now(), kind: "eof", code: code}
}

// percentile returns the q-quantile (0 < q <= 1) of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
