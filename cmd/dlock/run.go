package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/lockdir/dlock"
)

const runHelp = `Runs COMMAND while holding the lock at PATH, and releases the lock once
COMMAND and every process it started have exited. PATH is a directory that
dlock creates on first use (its parent must exist); put it on the filesystem
that every competing process sees: a local disk for one host, an NFS/SMB/sshfs
mount or a shared volume for many. Flags go before or right after PATH.
With -c, COMMAND is a shell command line, run by sh -c.

COMMAND gets the environment variables DLOCK_PATH (the lock's absolute path)
and DLOCK_FENCE (the fencing token, a number that rises on every acquisition:
hand it to the resource so that it can refuse a late holder's writes).

The job. COMMAND and everything it starts (children, "cmd &", nohup, even
processes that setsid and fork twice) are the job. As with flock(1), whose
lock lasts while any child holds the descriptor, the lock lasts as long as
the job: when COMMAND exits, dlock exits with its status at once, and its
supervisor keeps the lock (and refreshes it) in the background until the
job's last process has exited (with nothing left running, the lock is
released before dlock exits). With -stop-leftovers, dlock instead stops
what is left of the job when COMMAND exits (SIGTERM, SIGKILL after -grace),
then releases. On Linux, a supervising dlock process holds the lock and is
the job's child subreaper, so it sees every process of the job (and, as
root, puts the job in a cgroup of its own); with -pidns the job gets a pid
namespace of its own, whose init is the supervisor: the only way to have
the job die with the holder even when the holder itself is SIGKILLed.
Elsewhere the job is COMMAND's process group. -v says which.

Stopping the job: when the lock is lost, when dlock gets SIGINT, SIGTERM or
SIGHUP, and when the dlock process you started dies (even by SIGKILL), every
process of the job gets the signal (SIGTERM when the lock is lost or dlock
died), then SIGKILL after -grace, and only then is the lock released. While
dlock still waits for the lock, a signal cancels the wait: exit 128+N.

-grace and TIMEOUT. A holder that cannot refresh its lock is told it lost it
at its deadline, MARGIN before any other process may take it over (TIMEOUT
after its last refresh). dlock sets MARGIN to -grace plus a reaction slack of
TIMEOUT/10 (at least 100ms), so that the job is dead before a successor can
start. -grace defaults to TIMEOUT/5 (2s for the default 10s); the refresh
period is TIMEOUT/3, and -grace + slack + TIMEOUT/3 must stay below TIMEOUT:
a longer -grace needs a longer -stale-after.

Exit status:
  COMMAND's status    COMMAND ran (128+N if it died of signal N)
  75                  the lock was busy for all of PATIENCE (-conflict-exit, -E)
  76                  the lock was lost while the job ran
  126, 127            COMMAND could not be started, or was not found
  128+N               signal N (INT 130, TERM 143, HUP 129) cancelled the wait
  1, 2                another error; a usage error

Examples:
  # cron: run the backup unless the last one still runs (quietly skip then)
  dlock run -q -n /var/lock/backup.lock -- /usr/local/bin/backup

  # every replica runs this; one migrates, the others wait, then find nothing to do
  dlock run -stale-after 30 /shared/locks/migrate -- ./migrate up

  # wait at most 5 minutes, then give up with status 1 instead of 75
  dlock run -w 300 -E 1 /mnt/nfs/locks/report -- make report

  # many readers or one writer; at most 4 at once
  dlock run -s /shared/locks/db -- ./report
  dlock run -x /shared/locks/db -- ./migrate
  dlock run -slots 4 /shared/locks/encoders -c 'ffmpeg -i "$IN" "$OUT"'

  # the command can pass the fencing token on
  dlock run /shared/locks/db -c 'psql -v fence="$DLOCK_FENCE" -f job.sql'
`

// runConfig is a parsed "dlock run" command line.
type runConfig struct {
	lockFlags
	grace          time.Duration
	graceSet       bool
	stopLeftovers  bool
	pidns          bool
	shellCmd       string
	shellCmdSet    bool
	path           string
	argv           []string
	prog           string // argv[0] found in PATH
	margin         time.Duration
	refresh        time.Duration
	interactiveTTY bool // set by the front process: give the job the terminal
	fl             *flockConfig
	// report, when set, tells the front process COMMAND's exit status,
	// so that it exits with it at once while the supervisor holds the
	// lock on for the job's leftovers.
	report func(status int)
}

// reactionSlack is what dlock adds to -grace for MARGIN: the time from the
// deadline to the job's last process being gone, beyond the grace itself:
// waking up, listing the job and signalling it (milliseconds), the kernel
// finishing SIGKILLed processes (milliseconds, unless one is stuck in a
// hung filesystem, which nothing can stop), and the drift between two
// hosts' clock rates over TIMEOUT (parts per million). TIMEOUT/10 leaves a
// loaded machine two orders of magnitude to spare; 100ms is the floor for
// short TIMEOUTs.
func reactionSlack(timeout time.Duration) time.Duration {
	return max(timeout/10, 100*time.Millisecond)
}

// minTimeout is the shortest TIMEOUT (rounded up to 100ms) that leaves
// room for grace: grace + reactionSlack(T) + T/3 < T.
func minTimeout(grace time.Duration) time.Duration {
	t := (grace + 100*time.Millisecond) * 3 / 2 // slack 100ms: T < 1s
	if t >= time.Second {
		t = grace * 30 / 17 // slack T/10
	}
	return (t/(100*time.Millisecond) + 1) * 100 * time.Millisecond
}

// parseRun parses and checks a "dlock run" command line.
func parseRun(args []string, stderr io.Writer) (*runConfig, int, bool) {
	fs := newFlags("run", stderr)
	c := &runConfig{}
	c.lockFlags.register(fs)
	fs.Var(secondsFlag{d: &c.grace, set: &c.graceSet}, "grace", "`seconds` the job gets between SIGTERM and SIGKILL when it is stopped (default TIMEOUT/5)")
	fs.BoolVar(&c.stopLeftovers, "stop-leftovers", false, "when COMMAND exits, stop what is left of the job (SIGTERM, SIGKILL after -grace) and release, instead of holding the lock until it exits")
	fs.BoolVar(&c.pidns, "pidns", false, "Linux: run the job in a pid namespace of its own, whose end the kernel makes the end of every process in it (root, or unprivileged user namespaces)")
	fs.Func("c", "`shell command`: run it with sh -c instead of COMMAND [ARGS...], as flock -c", func(s string) error {
		c.shellCmd, c.shellCmdSet = s, true
		return nil
	})
	rest, code, stop := parseInterspersed(fs, args)
	if stop {
		return nil, code, true
	}
	if msg := c.lockFlags.check(); msg != "" {
		return nil, usageError(fs, "%s", msg), true
	}
	if !c.graceSet {
		c.grace = c.timeout / 5
	}
	c.refresh = c.timeout / 3
	c.margin = c.grace + reactionSlack(c.timeout)
	switch {
	case len(rest) == 0:
		return nil, usageError(fs, "missing PATH and COMMAND"), true
	case c.grace < 0:
		return nil, usageError(fs, "-grace %v: must not be negative", c.grace), true
	case c.margin+c.refresh >= c.timeout:
		// Longest grace that fits, and shortest TIMEOUT for this grace:
		// grace + max(T/10, 100ms) + T/3 < T.
		fit := c.timeout - c.refresh - reactionSlack(c.timeout)
		hint := fmt.Sprintf("give -stale-after %s or more", minTimeout(c.grace))
		if fit > 0 {
			hint = fmt.Sprintf("give -grace below %s, or -stale-after %s or more", fit.Round(time.Millisecond), minTimeout(c.grace))
		}
		return nil, usageError(fs, "-grace %v with -stale-after %v cannot work: the job must be stopped within MARGIN = grace + reaction slack %v, and MARGIN + the refresh period %v must be shorter than TIMEOUT; %s",
			c.grace, c.timeout, reactionSlack(c.timeout), c.refresh.Round(time.Millisecond), hint), true
	}
	c.path, c.argv = rest[0], rest[1:]
	switch {
	case c.path == "":
		return nil, usageError(fs, "PATH is empty"), true
	case c.shellCmdSet && len(c.argv) > 0:
		return nil, usageError(fs, "-c and COMMAND %q: give one", c.argv[0]), true
	case c.shellCmdSet:
		c.argv = []string{"sh", "-c", c.shellCmd}
	case len(c.argv) == 0:
		return nil, usageError(fs, "missing COMMAND after PATH %s", c.path), true
	}
	return c, 0, false
}

func runCmd(args []string, stderr io.Writer) int {
	c, code, stop := parseRun(args, stderr)
	if stop {
		return code
	}
	// Find COMMAND before waiting for the lock: no use queueing for a typo.
	prog, err := exec.LookPath(c.argv[0])
	if err != nil && !errors.Is(err, exec.ErrDot) {
		fmt.Fprintf(stderr, "dlock: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, iofs.ErrNotExist) {
			return exitNotFound
		}
		return exitCantExec
	}
	c.prog = prog
	return runFront(c, args, stderr)
}

// superviseCmd is the hidden subcommand of the supervising process that
// the front process (the one the user started) runs on unix systems.
const superviseCmd = "__supervise"

// superviseMain is the supervising process: args are "fg" or "bg" (whether
// the job gets the terminal), then the user's "dlock run" arguments.
func superviseMain(args []string, stderr io.Writer) int {
	if len(args) < 1 {
		return exitUsage
	}
	var c *runConfig
	if len(args) >= 3 && args[1] == "flock" {
		fc, code, stop := parseFlock(args[2], args[3:], io.Discard, stderr)
		if stop {
			return code
		}
		if c, code, stop = flockRunConfig(fc, stderr); stop {
			return code
		}
	} else {
		rc, code, stop := parseRun(args[1:], stderr)
		if stop {
			return code
		}
		c = rc
		prog, err := exec.LookPath(c.argv[0])
		if err != nil && !errors.Is(err, exec.ErrDot) {
			fmt.Fprintf(stderr, "dlock: %v\n", err)
			return exitNotFound
		}
		c.prog = prog
	}
	c.interactiveTTY = args[0] == "fg"
	c.report = statusReporter()
	return supervise(c, frontGone(), stderr)
}

// supervise takes the lock, runs the job and stops it when it must, and
// releases the lock once the job's last process has exited. frontDied is
// closed when the process the user started has died (nil: it is this one).
func supervise(c *runConfig, frontDied <-chan struct{}, stderr io.Writer) int {
	var log *slog.Logger
	if c.verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	logf := func(msg string, args ...any) {
		if log != nil {
			log.Info("dlock run: "+msg, args...)
		}
	}
	extra := []dlock.Option{dlock.WithMargin(c.margin)}
	if log != nil {
		extra = append(extra, dlock.WithLogger(log))
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Wait for the lock; a signal, or the death of the front process,
	// cancels the wait.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var l dlock.Locker
	var abs string
	var fl *flockLocked
	if c.fl == nil {
		var err error
		if l, abs, err = c.openLock(extra...); err != nil { // a URL PATH: backend.go
			fmt.Fprintln(stderr, explain(err, c.path))
			return exitError
		}
	}
	locked := make(chan error, 1)
	flCode := 0
	logf("locking", "path", c.path, "kind", c.kind(), "patience", patienceFlag{d: &c.patience}.String(),
		"timeout", c.timeout, "grace", c.grace, "margin", c.margin)
	go func() {
		if c.fl == nil {
			locked <- l.Lock(ctx)
			return
		}
		fl, flCode = flockAcquire(ctx, c, extra, os.Stdout, stderr)
		locked <- nil
	}()
	gaveUp := func(why string, status int) int {
		logf(why + ": giving up the wait")
		cancel()
		if err := <-locked; err == nil && l != nil { // acquired as we cancelled
			if err := l.Unlock(); err != nil {
				fmt.Fprintln(stderr, explain(err, c.path))
			}
		}
		if fl != nil {
			fl.release(c.fl)
		}
		return status
	}
	var err error
	select {
	case err = <-locked:
	case sig := <-sigs:
		return gaveUp("signal "+sig.String(), 128+signum(sig))
	case <-frontDied:
		return gaveUp("the dlock process that started this one died", exitError)
	}
	var busy *dlock.BusyError
	switch {
	case c.fl != nil && fl == nil:
		return flCode
	case errors.As(err, &busy):
		if !c.quiet {
			say(stderr, "%s is busy: %s; gave up after %s", c.path, describeHolder(busy.Holder, busy.Age), busy.Waited.Round(time.Millisecond))
		}
		return c.conflictExit
	case errors.Is(err, dlock.ErrBusy): // PATIENCE ran out inside an attempt the filesystem never answered
		if !c.quiet {
			fmt.Fprintln(stderr, explain(err, c.path))
		}
		return c.conflictExit
	case err != nil:
		fmt.Fprintln(stderr, explain(err, c.path))
		return exitError
	}
	unlock := func() error {
		if fl != nil {
			return fl.release(c.fl)
		}
		return l.Unlock()
	}
	lost := (<-chan struct{})(nil)
	fence := uint64(0)
	if fl != nil {
		abs, fence = fl.path, fl.fence
		if fl.locker != nil {
			lost = fl.locker.Lost()
		}
	} else {
		lost, fence = l.Lost(), l.Fence()
	}

	// Holding the lock: run the job.
	name := c.argv[0]
	var cmd *exec.Cmd
	if fl != nil {
		prog, err := exec.LookPath(name)
		if err != nil && !errors.Is(err, exec.ErrDot) {
			why := strerror(err)
			if errors.Is(err, exec.ErrNotFound) {
				why = strerror(syscall.ENOENT)
			}
			fmt.Fprintf(stderr, "%s: failed to execute %s: %s\n", c.fl.prog, name, why)
			if err := unlock(); err != nil {
				fmt.Fprintln(stderr, explain(err, c.path))
			}
			return exUnavailable
		}
		cmd = exec.Command(prog, c.argv[1:]...)
		cmd.Args[0] = name
		fl.prepareJob(c.fl, cmd)
		if c.fl.verbose {
			fmt.Fprintf(os.Stdout, "%s: executing %s\n", c.fl.prog, name)
		}
	} else {
		cmd = exec.Command(c.prog, c.argv[1:]...)
		cmd.Args[0] = name
		cmd.Env = append(os.Environ(), "DLOCK_PATH="+abs, "DLOCK_FENCE="+strconv.FormatUint(fence, 10))
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	j, err := startHeld(lost, cmd, c)
	if errors.Is(err, errLostFirst) {
		say(stderr, "%s: not starting %s: %v", c.path, name, err)
		if err := unlock(); err != nil {
			fmt.Fprintln(stderr, explain(err, c.path))
		}
		return exitLost
	}
	if err != nil {
		code := exitCantExec
		if fl != nil {
			fmt.Fprintf(stderr, "%s: failed to execute %s: %s\n", c.fl.prog, name, strerror(err))
			code = exUnavailable
		} else {
			fmt.Fprintf(stderr, "dlock: starting %s: %v\n", name, err)
		}
		if err := unlock(); err != nil {
			fmt.Fprintln(stderr, explain(err, c.path))
		}
		return code
	}
	logf("started command", "pid", cmd.Process.Pid, "fence", fence, "job", j.mechanism())

	wasLost := false
	status := -1
	cmdExit, gone := j.commandExit(), j.gone()
	var kill <-chan time.Time
	var rekill *time.Ticker
	var rekillC <-chan time.Time
	stopping := false
	stop := func(sig syscall.Signal, why string) {
		if stopping {
			return
		}
		stopping = true
		if pids := j.pids(); len(pids) > 0 || status < 0 {
			logf("stopping the job", "why", why, "signal", sig, "processes", pids, "grace", c.grace)
		}
		j.signal(sig)
		kill = time.After(c.grace)
	}
loop:
	for {
		select {
		case sig := <-sigs:
			s, _ := sig.(syscall.Signal)
			stop(s, "dlock got "+sig.String())
		case <-frontDied:
			frontDied = nil
			stop(syscall.SIGTERM, "the dlock process that started this one died")
		case <-lost:
			lost, wasLost = nil, true
			say(stderr, "lost the %s %s while %s (pid %d) ran: stopping the job (SIGTERM, SIGKILL after %s)", c.kind(), c.path, name, cmd.Process.Pid, c.grace)
			stop(syscall.SIGTERM, "lost the lock")
		case status = <-cmdExit:
			cmdExit = nil
			logf("command exited", "status", status)
			if pids := j.pids(); c.report != nil && !stopping && len(pids) > 0 && !c.stopLeftovers {
				// Leftovers keep the lock, as children that inherited
				// flock's descriptor do; the front process exits with
				// COMMAND's status now, and its death no longer stops
				// the job. (With none left, the lock is released before
				// the front exits: the caller's next command finds it
				// free.)
				c.report(status)
				c.report, frontDied = nil, nil
			}
			if pids := j.pids(); len(pids) > 0 {
				if c.stopLeftovers {
					stop(syscall.SIGTERM, "COMMAND exited (-stop-leftovers)")
				} else {
					logf("holding the lock until the rest of the job exits", "processes", pids)
				}
			}
		case <-kill:
			kill = nil
			if pids := j.pids(); len(pids) > 0 {
				say(stderr, "the job of %s still runs %s after it was told to stop (pids %v): sending SIGKILL", name, c.grace, pids)
			}
			j.signal(syscall.SIGKILL)
			// A process forking while it was signalled can leave a child
			// that the signal missed: kill again until the job is gone.
			rekill = time.NewTicker(50 * time.Millisecond)
			rekillC = rekill.C
		case <-rekillC:
			j.signal(syscall.SIGKILL)
		case <-gone:
			break loop
		}
	}
	if rekill != nil {
		rekill.Stop()
	}
	if status < 0 {
		status = <-cmdExit
	}
	logf("job gone", "status", status)

	err = unlock()
	switch {
	case wasLost || errors.Is(err, dlock.ErrLost):
		if err != nil {
			fmt.Fprintln(stderr, explain(err, c.path))
		}
		say(stderr, "%s exited with status %d, but the lock was lost while the job ran: exit %d", name, status, exitLost)
		return exitLost
	case err != nil:
		fmt.Fprintln(stderr, explain(err, c.path))
		if status == 0 {
			return exitError
		}
	}
	return status
}

// describeHolder says who holds a lock, and since when, for people.
func describeHolder(h dlock.Holder, age time.Duration) string {
	if h.Unknown {
		return "held by " + h.String()
	}
	s := fmt.Sprintf("held by pid %d on host %s", h.PID, h.Host)
	if !h.Since.IsZero() && !h.Beat.IsZero() {
		s += fmt.Sprintf(" for %s", (h.Beat.Sub(h.Since) + age).Round(time.Millisecond))
	}
	return s + fmt.Sprintf(" (refreshed %s ago, fence %d)", age.Round(time.Millisecond), h.Fence)
}

// exitStatus is a shell's $? for a finished process: 128+N for death by
// signal N.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return exitError
	}
	if ws, ok := ps.Sys().(interface {
		Signaled() bool
		Signal() syscall.Signal
	}); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	return exitError
}

// signum is the number of a signal, for 128+N.
func signum(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return 1
}
