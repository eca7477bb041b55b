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

const runHelp = `Runs COMMAND while holding the lock at PATH, then releases the lock.
PATH is a directory that dlock creates on first use (its parent must exist);
put it on the filesystem that every competing process sees: a local disk for
one host, an NFS/SMB/sshfs mount or a shared volume for many.

COMMAND gets the environment variables DLOCK_PATH (the lock's absolute path)
and DLOCK_FENCE (the fencing token, a number that rises on every acquisition:
hand it to the resource so that it can refuse a late holder's writes).

Signals: SIGINT, SIGTERM and SIGHUP are forwarded to COMMAND, and the lock is
released once COMMAND exits. (A Ctrl-C typed in a terminal reaches COMMAND
directly as well, so COMMAND may see it twice.) While dlock is still waiting
for the lock they cancel the wait: nothing is left behind, exit 128+N.
If dlock itself dies, even by SIGKILL, Linux kills COMMAND at once (parent
death signal); on other systems COMMAND keeps running while the lock goes
stale after TIMEOUT (on Windows COMMAND is killed: it runs in a job object).

If the lock is lost while COMMAND runs (another process reclaimed it after
dlock failed to refresh it for TIMEOUT, or it was broken or removed; dlock
notices within TIMEOUT/3), dlock says so, sends COMMAND SIGTERM, then SIGKILL
after -grace, and exits 76.

Exit status:
  COMMAND's status    COMMAND ran (128+N if it died of signal N)
  75                  the lock was busy for all of PATIENCE (-conflict-exit)
  76                  the lock was lost while COMMAND ran
  126, 127            COMMAND could not be started, or was not found
  128+N               signal N (INT 130, TERM 143, HUP 129) cancelled the wait
  1, 2                another error; a usage error

Examples:
  # cron: run the backup unless the last one still runs (quietly skip then)
  dlock run -q -patience 0 /var/lock/backup.lock -- /usr/local/bin/backup

  # every replica runs this; one migrates, the others wait, then find nothing to do
  dlock run -timeout 30s /shared/locks/migrate -- ./migrate up

  # wait at most 5 minutes, then give up with status 1 instead of 75
  dlock run -patience 5m -conflict-exit 1 /mnt/nfs/locks/report -- make report

  # the command can pass the fencing token on
  dlock run /shared/locks/db -- sh -c 'psql -v fence="$DLOCK_FENCE" -f job.sql'
`

// patienceFlag is PATIENCE: a duration, or "forever" (any negative value).
type patienceFlag time.Duration

func (p *patienceFlag) String() string {
	if *p < 0 {
		return "forever"
	}
	return time.Duration(*p).String()
}

func (p *patienceFlag) Set(s string) error {
	if s == "forever" || s == "inf" {
		*p = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New(`want a duration such as 0, 30s or 5m, or "forever"`)
	}
	*p = patienceFlag(max(d, -1))
	return nil
}

func runCmd(args []string, stderr io.Writer) int {
	fs := newFlags("run", "[flags] PATH -- COMMAND [ARGS...]", runHelp, stderr)
	timeout := fs.Duration("timeout", dlock.DefaultTimeout, "`TIMEOUT`: a lock not refreshed this long is stale and may be reclaimed by another")
	patience := patienceFlag(-1)
	fs.Var(&patience, "patience", "`PATIENCE`: how long to wait for a busy lock before giving up: 0 means one attempt, \"forever\" no limit")
	poll := fs.Duration("poll", dlock.DefaultPollInterval, "how often to look at a busy lock (bounds the hand-off delay on network filesystems)")
	conflictExit := fs.Int("conflict-exit", exitBusy, "exit `status` when the lock stayed busy for all of PATIENCE")
	grace := fs.Duration("grace", 5*time.Second, "after losing the lock, how long COMMAND gets between SIGTERM and SIGKILL")
	quiet := fs.Bool("q", false, "quiet: say nothing when the lock is busy")
	verbose := fs.Bool("v", false, "verbose: log waiting, acquiring, releasing and signals to stderr")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
		return usageError(fs, "missing PATH and COMMAND")
	case *timeout <= 0:
		return usageError(fs, "-timeout %v: must be positive", *timeout)
	case *poll <= 0:
		return usageError(fs, "-poll %v: must be positive", *poll)
	case *grace < 0:
		return usageError(fs, "-grace %v: must not be negative", *grace)
	case *conflictExit < 0 || *conflictExit > 255:
		return usageError(fs, "-conflict-exit %d: must be 0 to 255", *conflictExit)
	}
	path, argv := rest[0], rest[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return usageError(fs, "missing COMMAND after PATH %s (flags go before PATH)", path)
	}

	var log *slog.Logger
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	logf := func(msg string, args ...any) {
		if log != nil {
			log.Info("dlock run: "+msg, args...)
		}
	}

	// Find COMMAND before waiting for the lock: no use queueing for a typo.
	prog, err := exec.LookPath(argv[0])
	if err != nil && !errors.Is(err, exec.ErrDot) {
		fmt.Fprintf(stderr, "dlock: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, iofs.ErrNotExist) {
			return exitNotFound
		}
		return exitCantExec
	}

	opts := []dlock.Option{dlock.WithTimeout(*timeout), dlock.WithPatience(time.Duration(patience)), dlock.WithPollInterval(*poll)}
	if log != nil {
		opts = append(opts, dlock.WithLogger(log))
	}
	l, err := dlock.New(path, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitError
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Wait for the lock; a signal cancels the wait.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	locked := make(chan error, 1)
	logf("locking", "path", l.Path(), "patience", patience.String())
	go func() { locked <- l.Lock(ctx) }()
	select {
	case err = <-locked:
	case sig := <-sigs:
		logf("signal while waiting for the lock: giving up", "signal", sig)
		cancel()
		if err := <-locked; err == nil { // acquired as we cancelled
			if err := l.Unlock(); err != nil {
				fmt.Fprintf(stderr, "%v\n", err)
			}
		}
		return 128 + signum(sig)
	}
	var busy *dlock.BusyError
	switch {
	case errors.As(err, &busy):
		if !*quiet {
			fmt.Fprintf(stderr, "dlock: %s is busy: %s; gave up after %s\n", busy.Path, describeHolder(busy.Holder, busy.Age), busy.Waited.Round(time.Millisecond))
		}
		return *conflictExit
	case err != nil:
		fmt.Fprintf(stderr, "%v\n", err)
		return exitError
	}

	// Holding the lock: run COMMAND.
	cmd := exec.Command(prog, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "DLOCK_PATH="+l.Path(), "DLOCK_FENCE="+strconv.FormatUint(l.Fence(), 10))
	waited, err := startChild(cmd)
	if err != nil {
		fmt.Fprintf(stderr, "dlock: starting %s: %v\n", argv[0], err)
		if err := l.Unlock(); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
		}
		return exitCantExec
	}
	logf("started command", "pid", cmd.Process.Pid, "fence", l.Fence())

	lost := l.Lost()
	wasLost := false
	var kill <-chan time.Time
loop:
	for {
		select {
		case sig := <-sigs:
			logf("forwarding signal", "signal", sig, "pid", cmd.Process.Pid)
			if err := forward(cmd.Process, sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
				fmt.Fprintf(stderr, "dlock: forwarding %v to %s: %v\n", sig, argv[0], err)
			}
		case <-lost:
			lost, wasLost = nil, true
			fmt.Fprintf(stderr, "dlock: lost the lock %s while %s (pid %d) ran: stopping it (SIGTERM, SIGKILL after %s)\n",
				l.Path(), argv[0], cmd.Process.Pid, *grace)
			if err := forward(cmd.Process, syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
				fmt.Fprintf(stderr, "dlock: stopping %s: %v\n", argv[0], err)
			}
			kill = time.After(*grace)
		case <-kill:
			kill = nil
			fmt.Fprintf(stderr, "dlock: %s (pid %d) still runs %s after SIGTERM: sending SIGKILL\n", argv[0], cmd.Process.Pid, *grace)
			_ = cmd.Process.Kill()
		case <-waited:
			break loop
		}
	}
	status := exitStatus(cmd.ProcessState)
	logf("command exited", "status", status)

	err = l.Unlock()
	switch {
	case wasLost || errors.Is(err, dlock.ErrLost):
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
		}
		fmt.Fprintf(stderr, "dlock: %s exited with status %d, but the lock was lost while it ran: exit %d\n", argv[0], status, exitLost)
		return exitLost
	case err != nil:
		fmt.Fprintf(stderr, "%v\n", err)
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
