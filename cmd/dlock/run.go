package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"os/signal"
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
// Its phases, in order: wait for the lock (lock, here), start the job,
// watch it until its last process is gone, release (supervisor.go).
func supervise(c *runConfig, frontDied <-chan struct{}, stderr io.Writer) int {
	s := newSupervisor(c, frontDied, stderr)
	defer signal.Stop(s.sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if code, ok := s.lock(ctx, cancel); !ok {
		return code
	}
	cmd, j, code, ok := s.start()
	if !ok {
		return code
	}
	status, wasLost := s.watch(cmd, j)
	code = s.release(status, wasLost)
	// The lock is free: what is left is this process's own tidying.
	// (The front process still waits for this one's exit: were it told
	// the status first, a dlock run inside another's job would leave
	// this process behind as a leftover of that job for a moment, and
	// the outer dlock would exit before releasing its lock.)
	j.cleanup()
	return code
}

// lock waits for the lock; a signal, or the death of the front process,
// cancels the wait. Unless ok, supervise exits with code.
func (s *supervisor) lock(ctx context.Context, cancel context.CancelFunc) (code int, ok bool) {
	c := s.c
	if c.fl == nil {
		var err error
		if s.l, s.abs, err = c.openLock(s.extra...); err != nil { // a URL PATH: backend.go
			fmt.Fprintln(s.stderr, explain(err, c.path))
			return exitError, false
		}
	}
	locked := make(chan error, 1)
	flCode := 0
	s.logf("locking", "path", c.path, "kind", c.kind(), "patience", patienceFlag{d: &c.patience}.String(),
		"timeout", c.timeout, "grace", c.grace, "margin", c.margin)
	go func() {
		if c.fl == nil {
			locked <- s.l.Lock(ctx)
			return
		}
		s.fl, flCode = flockAcquire(ctx, c, s.extra, os.Stdout, s.stderr)
		locked <- nil
	}()
	var err error
	select {
	case err = <-locked:
	case sig := <-s.sigs:
		return s.gaveUp(locked, cancel, "signal "+sig.String(), 128+signum(sig)), false
	case <-s.frontDied:
		return s.gaveUp(locked, cancel, "the dlock process that started this one died", exitError), false
	}
	if c.fl != nil && s.fl == nil {
		return flCode, false
	}
	if code, failed := s.notLocked(err); failed {
		return code, false
	}
	s.held()
	return 0, true
}

// gaveUp cancels the wait for the lock, and releases it if it was
// acquired as the wait was cancelled.
func (s *supervisor) gaveUp(locked <-chan error, cancel context.CancelFunc, why string, status int) int {
	s.logf(why + ": giving up the wait")
	cancel()
	if err := <-locked; err == nil && s.l != nil { // acquired as we cancelled
		if err := s.l.Unlock(); err != nil {
			fmt.Fprintln(s.stderr, explain(err, s.c.path))
		}
	}
	if s.fl != nil {
		s.fl.release(s.c.fl)
	}
	return status
}

// notLocked says why the wait for the lock ended without it, and the exit
// status for that; failed is false when err is nil.
func (s *supervisor) notLocked(err error) (code int, failed bool) {
	c := s.c
	var busy *dlock.BusyError
	switch {
	case errors.As(err, &busy):
		if !c.quiet {
			say(s.stderr, "%s is busy: %s; gave up after %s", c.path, describeHolder(busy.Holder, busy.Age), busy.Waited.Round(time.Millisecond))
		}
		return c.conflictExit, true
	case errors.Is(err, dlock.ErrBusy): // PATIENCE ran out inside an attempt the filesystem never answered
		if !c.quiet {
			fmt.Fprintln(s.stderr, explain(err, c.path))
		}
		return c.conflictExit, true
	case err != nil:
		fmt.Fprintln(s.stderr, explain(err, c.path))
		return exitError, true
	}
	return 0, false
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
