package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/lockdir/dlock"
)

// supervisor is the process that holds the lock for "dlock run" while the
// job runs: the front process itself on Windows, the one it re-executes as
// __supervise elsewhere (front_unix.go). supervise (run.go) goes through
// its phases: lock, start, watch, release.
type supervisor struct {
	c         *runConfig
	stderr    io.Writer
	log       *slog.Logger // nil without -v
	extra     []dlock.Option
	sigs      chan os.Signal
	frontDied <-chan struct{} // nil once it no longer stops the job

	// The lock, once acquired: l for dlock run, fl for the flock(1)
	// personality.
	l     dlock.Locker
	fl    *flockLocked
	abs   string
	lost  <-chan struct{}
	fence uint64
}

// newSupervisor sets up the logger and the options of the lock, and starts
// catching the signals that stop the wait or the job.
func newSupervisor(c *runConfig, frontDied <-chan struct{}, stderr io.Writer) *supervisor {
	s := &supervisor{c: c, stderr: stderr, frontDied: frontDied}
	if c.verbose {
		s.log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	s.extra = []dlock.Option{dlock.WithMargin(c.margin)}
	if s.log != nil {
		s.extra = append(s.extra, dlock.WithLogger(s.log))
	}
	s.sigs = make(chan os.Signal, 8)
	signal.Notify(s.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return s
}

// logf logs for -v.
func (s *supervisor) logf(msg string, args ...any) {
	if s.log != nil {
		s.log.Info("dlock run: "+msg, args...)
	}
}

// held notes the acquired lock's path, fence and Lost channel.
func (s *supervisor) held() {
	if s.fl == nil {
		s.lost, s.fence = s.l.Lost(), s.l.Fence()
		return
	}
	s.abs, s.fence = s.fl.path, s.fl.fence
	if s.fl.locker != nil {
		s.lost = s.fl.locker.Lost()
	}
}

// unlock releases the lock.
func (s *supervisor) unlock() error {
	if s.fl != nil {
		return s.fl.release(s.c.fl)
	}
	err := s.l.Unlock()
	hintsSent(s.l)
	return err
}

// unlockOrSay releases the lock, saying why it could not.
func (s *supervisor) unlockOrSay() {
	if err := s.unlock(); err != nil {
		fmt.Fprintln(s.stderr, explain(err, s.c.path))
	}
}

// start starts the job while the lock is held. Unless ok, it has released
// the lock and supervise exits with code.
func (s *supervisor) start() (cmd *exec.Cmd, j job, code int, ok bool) {
	c := s.c
	name := c.argv[0]
	if s.fl != nil {
		if cmd, code, ok = s.flockCommand(name); !ok {
			return nil, nil, code, false
		}
	} else {
		cmd = exec.Command(c.prog, c.argv[1:]...)
		cmd.Args[0] = name
		cmd.Env = append(os.Environ(), "DLOCK_PATH="+s.abs, "DLOCK_FENCE="+strconv.FormatUint(s.fence, 10))
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	j, err := startHeld(s.lost, cmd, c)
	if errors.Is(err, errLostFirst) {
		say(s.stderr, "%s: not starting %s: %v", c.path, name, err)
		s.unlockOrSay()
		return nil, nil, exitLost, false
	}
	if err != nil {
		code := exitCantExec
		if s.fl != nil {
			fmt.Fprintf(s.stderr, "%s: failed to execute %s: %s\n", c.fl.prog, name, strerror(err))
			code = exUnavailable
		} else {
			fmt.Fprintf(s.stderr, "dlock: starting %s: %v\n", name, err)
		}
		s.unlockOrSay()
		return nil, nil, code, false
	}
	s.logf("started command", "pid", cmd.Process.Pid, "fence", s.fence, "job", j.mechanism())
	return cmd, j, 0, true
}

// flockCommand is COMMAND for the flock(1) personality, found in PATH
// only now that the lock is held, as flock(1) does.
func (s *supervisor) flockCommand(name string) (*exec.Cmd, int, bool) {
	c := s.c
	prog, err := exec.LookPath(name)
	if err != nil && !errors.Is(err, exec.ErrDot) {
		why := strerror(err)
		if errors.Is(err, exec.ErrNotFound) {
			why = strerror(syscall.ENOENT)
		}
		fmt.Fprintf(s.stderr, "%s: failed to execute %s: %s\n", c.fl.prog, name, why)
		s.unlockOrSay()
		return nil, exUnavailable, false
	}
	cmd := exec.Command(prog, c.argv[1:]...)
	cmd.Args[0] = name
	s.fl.prepareJob(c.fl, cmd)
	if c.fl.verbose {
		fmt.Fprintf(os.Stdout, "%s: executing %s\n", c.fl.prog, name)
	}
	return cmd, 0, true
}

// release releases the lock once the job is gone, and says with which
// status dlock exits.
func (s *supervisor) release(status int, wasLost bool) int {
	c := s.c
	err := s.unlock()
	switch {
	case wasLost || errors.Is(err, dlock.ErrLost):
		if err != nil {
			fmt.Fprintln(s.stderr, explain(err, c.path))
		}
		say(s.stderr, "%s exited with status %d, but the lock was lost while the job ran: exit %d", c.argv[0], status, exitLost)
		return exitLost
	case err != nil:
		fmt.Fprintln(s.stderr, explain(err, c.path))
		if status == 0 {
			return exitError
		}
	}
	return status
}

// watch follows the job until its last process has exited, stopping it
// when the lock is lost, dlock gets a signal or the front process dies,
// and returns COMMAND's status and whether the lock was lost.
func (s *supervisor) watch(cmd *exec.Cmd, j job) (status int, wasLost bool) {
	w := &jobWatch{s: s, j: j, status: -1, cmdExit: j.commandExit()}
	gone := j.gone()
loop:
	for {
		select {
		case sig := <-s.sigs:
			sg, _ := sig.(syscall.Signal)
			w.stop(sg, "dlock got "+sig.String())
		case <-s.frontDied:
			s.frontDied = nil
			w.stop(syscall.SIGTERM, "the dlock process that started this one died")
		case <-s.lost:
			s.lost, w.wasLost = nil, true
			say(s.stderr, "lost the %s %s while %s (pid %d) ran: stopping the job (SIGTERM, SIGKILL after %s)", s.c.kind(), s.c.path, s.c.argv[0], cmd.Process.Pid, s.c.grace)
			w.stop(syscall.SIGTERM, "lost the lock")
		case w.status = <-w.cmdExit:
			w.exited()
		case <-w.kill:
			w.killNow()
		case <-w.rekillC:
			j.signal(syscall.SIGKILL)
		case <-gone:
			break loop
		}
	}
	if w.rekill != nil {
		w.rekill.Stop()
	}
	if w.status < 0 {
		w.status = <-w.cmdExit
	}
	s.logf("job gone", "status", w.status)
	return w.status, w.wasLost
}

// jobWatch is what watch carries from one event to the next.
type jobWatch struct {
	s        *supervisor
	j        job
	status   int // COMMAND's, -1 while it runs
	wasLost  bool
	stopping bool
	cmdExit  <-chan int
	kill     <-chan time.Time // the end of -grace, once stopping
	rekill   *time.Ticker
	rekillC  <-chan time.Time
}

// stop tells the job to stop (once), and SIGKILLs it after -grace.
func (w *jobWatch) stop(sig syscall.Signal, why string) {
	if w.stopping {
		return
	}
	w.stopping = true
	if pids := w.j.pids(); len(pids) > 0 || w.status < 0 {
		w.s.logf("stopping the job", "why", why, "signal", sig, "processes", pids, "grace", w.s.c.grace)
	}
	w.j.signal(sig)
	w.kill = time.After(w.s.c.grace)
}

// exited: COMMAND exited (w.status); what is left of the job keeps the
// lock, or is stopped with -stop-leftovers.
func (w *jobWatch) exited() {
	s, c := w.s, w.s.c
	w.cmdExit = nil
	s.logf("command exited", "status", w.status)
	if pids := w.j.pids(); c.report != nil && !w.stopping && len(pids) > 0 && !c.stopLeftovers {
		// Leftovers keep the lock, as children that inherited
		// flock's descriptor do; the front process exits with
		// COMMAND's status now, and its death no longer stops
		// the job. (With none left, the lock is released before
		// the front exits: the caller's next command finds it
		// free.)
		c.report(w.status)
		c.report, s.frontDied = nil, nil
	}
	if pids := w.j.pids(); len(pids) > 0 {
		if c.stopLeftovers {
			w.stop(syscall.SIGTERM, "COMMAND exited (-stop-leftovers)")
		} else {
			s.logf("holding the lock until the rest of the job exits", "processes", pids)
		}
	}
}

// killNow: -grace is over; SIGKILL the job, and again until it is gone.
func (w *jobWatch) killNow() {
	w.kill = nil
	if pids := w.j.pids(); len(pids) > 0 {
		say(w.s.stderr, "the job of %s still runs %s after it was told to stop (pids %v): sending SIGKILL", w.s.c.argv[0], w.s.c.grace, pids)
	}
	w.j.signal(syscall.SIGKILL)
	// A process forking while it was signalled can leave a child
	// that the signal missed: kill again until the job is gone.
	w.rekill = time.NewTicker(50 * time.Millisecond)
	w.rekillC = w.rekill.C
}
