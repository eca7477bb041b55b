// Command startcost measures what one short "dlock run" (and "dlock
// flock") costs, as whole processes, against util-linux flock(1) running
// the same command, and against the floors of any command written in Go:
// a bare Go program's start, a Go program that runs the command (os/exec),
// and a Go program that runs another that runs the command (the shape of
// "dlock run": the process started, and the supervisor it starts).
//
// Usage:
//
//	go build -o /tmp/dlock ./cmd/dlock
//	go run ./scripts/startcost -dlock /tmp/dlock [-n 200] [-dir DIR] [-other /tmp/dlock-main]
//
// -other adds the two dlock commands of another build (the one before a
// change) to the same rounds.
//
// Each round runs every command once, uncontended, in a rotating order,
// so that the machine's drift falls alike on all; the ratios are taken
// round by round (pair by pair), and the table gives their median and
// their 10th and 90th percentiles. Wall time runs from the fork to the
// reaping of the process started: what the caller waits for. CPU time is
// the user and system time of that process and of every process it left
// (this program is their child subreaper and reaps them all before the
// next command), so work moved after the caller's wait is counted too.
// The lock and file are made in DIR (default: a new directory under
// $TMPDIR), which decides the filesystem measured.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// These arguments make this program a floor: bareArg exits at once;
// runArg runs the command after it and exits with its status; chainArg
// runs this program again with runArg and the command.
const (
	bareArg  = "-startcost-bare"
	runArg   = "-startcost-run"
	chainArg = "-startcost-chain"
)

// floor is this program as a floor (see bareArg), or false.
func floor(args []string) bool {
	if len(args) < 2 {
		return false
	}
	var cmd *exec.Cmd
	switch {
	case args[1] == bareArg:
		return true
	case args[1] == runArg && len(args) > 2:
		cmd = exec.Command(args[2], args[3:]...)
	case args[1] == chainArg && len(args) > 2:
		cmd = exec.Command(args[0], append([]string{runArg}, args[2:]...)...)
	default:
		return false
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		os.Exit(1)
	}
	return true
}

type command struct {
	name string
	argv []string
	wall []time.Duration
	cpu  []time.Duration
}

func main() {
	if floor(os.Args) {
		return
	}
	dlock := flag.String("dlock", "", "the dlock binary to measure (required)")
	flockBin := flag.String("flock", "flock", "util-linux flock(1)")
	n := flag.Int("n", 200, "rounds")
	dir := flag.String("dir", "", "where the lock and the file are made (default: a new directory under $TMPDIR)")
	other := flag.String("other", "", "another dlock binary, measured in the same rounds (before a change)")
	flag.Parse()
	if *dlock == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: startcost -dlock DLOCK_BINARY [-n ROUNDS] [-dir DIR] [-flock FLOCK] [-other DLOCK_BINARY]")
		os.Exit(2)
	}
	if err := run(*dlock, *other, *flockBin, *dir, *n); err != nil {
		fmt.Fprintln(os.Stderr, "startcost:", err)
		os.Exit(1)
	}
}

func run(dlock, other, flockBin, dir string, n int) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "startcost")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	truePath, err := lookPath("true")
	if err != nil {
		return err
	}
	if flockBin, err = lookPath(flockBin); err != nil {
		return err
	}
	// Orphans (dlock's supervisor, once the front process has exited)
	// come to this process, which reaps them and so counts their CPU.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return err
	}
	cmds := []*command{
		{name: "flock FILE true", argv: []string{flockBin, filepath.Join(dir, "file"), truePath}},
		{name: "dlock run PATH -- true", argv: []string{dlock, "run", filepath.Join(dir, "lock"), "--", truePath}},
		{name: "dlock flock FILE true", argv: []string{dlock, "flock", filepath.Join(dir, "file2"), truePath}},
		{name: "Go: start", argv: []string{self, bareArg}},
		{name: "Go: run true", argv: []string{self, runArg, truePath}},
		{name: "Go: Go runs true", argv: []string{self, chainArg, truePath}},
	}
	if other != "" {
		cmds = append(cmds,
			&command{name: "other: dlock run", argv: []string{other, "run", filepath.Join(dir, "lock"), "--", truePath}},
			&command{name: "other: dlock flock", argv: []string{other, "flock", filepath.Join(dir, "file2"), truePath}})
	}
	for _, c := range cmds { // warm-up: the page cache, the lock directories
		if _, _, err := once(c.argv); err != nil {
			return err
		}
	}
	for r := range n {
		for k := range cmds {
			c := cmds[(r+k)%len(cmds)]
			wall, cpu, err := once(c.argv)
			if err != nil {
				return err
			}
			c.wall, c.cpu = append(c.wall, wall), append(c.cpu, cpu)
		}
	}
	base := cmds[0]
	fmt.Printf("%d rounds, each command once a round in rotating order; ratios round by round against %q\n", n, base.name)
	fmt.Printf("%-22s %10s %10s %22s %22s\n", "command", "wall p50", "cpu p50", "wall ratio p50 [p10-p90]", "cpu ratio p50 [p10-p90]")
	for _, c := range cmds {
		fmt.Printf("%-22s %10s %10s %22s %22s\n", c.name, median(c.wall).Round(time.Microsecond), median(c.cpu).Round(time.Microsecond),
			ratios(c.wall, base.wall), ratios(c.cpu, base.cpu))
	}
	return nil
}

// once runs argv, its output thrown away, and returns its wall time (fork
// to reaping) and the CPU time of it and of every process it left.
func once(argv []string) (wall, cpu time.Duration, err error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer null.Close()
	fd := null.Fd()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_CHILDREN, &before)
	start := time.Now()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{fd, fd, fd}})
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", argv[0], err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return 0, 0, err
	}
	wall = time.Since(start)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return 0, 0, fmt.Errorf("%q: %v (exit %d)", argv, ws, ws.ExitStatus())
	}
	for { // what it left: reparented here
		if _, err := syscall.Wait4(-1, &ws, 0, nil); err == syscall.ECHILD {
			break
		} else if err != nil && err != syscall.EINTR {
			return 0, 0, err
		}
	}
	unix.Getrusage(unix.RUSAGE_CHILDREN, &after)
	cpu = time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	return wall, cpu, nil
}

func lookPath(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH", name)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// ratios is the median and the 10th and 90th percentiles of a[i]/b[i].
func ratios(a, b []time.Duration) string {
	var r []float64
	for i := range a {
		if b[i] > 0 {
			r = append(r, float64(a[i])/float64(b[i]))
		}
	}
	if len(r) == 0 {
		return "n/a"
	}
	slices.Sort(r)
	at := func(q float64) float64 { return r[int(q*float64(len(r)-1))] }
	return fmt.Sprintf("%.2f [%.2f-%.2f]", at(0.5), at(0.1), at(0.9))
}
