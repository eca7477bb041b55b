package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockdir/dlock"
)

const holdHelp = `Takes the lock at PATH for the rest of a shell script, as
"exec 9>f; flock -n 9 || exit 1" does with flock(1): a holder process keeps
the lock (refreshing it) for as long as process PID lives, and releases it
when PID exits, however it exits. Pass the script's own pid: -pid $$.
Once the lock is held, dlock hold prints shell assignments of DLOCK_PATH,
DLOCK_FENCE and DLOCK_HOLDER (the holder process) and exits 0; the holder
stays in the background. "dlock release" releases the lock early.

If the lock is lost while held (see "dlock help run"), the holder says so
on stderr and sends PID SIGTERM: the rest of the script is no longer
guarded. A script cannot leak the lock past its own life: the holder
watches PID (a pidfd on Linux, a poll every 250ms elsewhere) and
releases when it is gone; if the holder itself is killed, the lock is
free at once for this host and after TIMEOUT for others.

When the lock stays busy, or on any error, dlock hold prints "(exit N)"
(so that eval fails too) and exits N: 75 busy (-conflict-exit, -E), 1
error, 2 usage.

Do not capture its stderr in the same $(...): the holder keeps it open.

Examples:
  #!/bin/sh
  # skip this run if another still runs; hold the lock until the script ends
  out=$(dlock hold -n -pid $$ /var/lock/nightly.lock) || exit 0
  eval "$out"
  ... the guarded rest of the script ...
  dlock release      # optional: release before the script ends

  # the same in one line: eval fails with the status when the lock is busy
  eval "$(dlock hold -n -pid $$ /var/lock/nightly.lock)" || exit 0
`

const releaseHelp = `Releases the lock that "dlock hold" took for this script, before the
script ends: it stops the holder named by DLOCK_HOLDER (set by the eval of
dlock hold's output) and returns once the lock is released.

Exit status: 0 released; 1 no holder, or it did not release; 2 usage error.
`

// holderCmd is the hidden subcommand of the background holder.
const holderCmd = "__holder"

// parseHold parses "dlock hold" flags.
func parseHold(args []string, stderr io.Writer) (*lockFlags, int, string, int, bool) {
	fs := newFlags("hold", stderr)
	lf := &lockFlags{}
	lf.register(fs)
	pid := fs.Int("pid", 0, "`PID` of the process (the script: $$) for whose life the lock is held")
	rest, code, stop := parseInterspersed(fs, args)
	if stop {
		return nil, 0, "", code, true
	}
	if msg := lf.check(); msg != "" {
		return nil, 0, "", usageError(fs, "%s", msg), true
	}
	switch {
	case len(rest) == 0:
		return nil, 0, "", usageError(fs, "missing PATH"), true
	case rest[0] == "":
		return nil, 0, "", usageError(fs, "PATH is empty"), true
	case len(rest) > 1:
		return nil, 0, "", usageError(fs, "one PATH; unexpected %q after it", rest[1]), true
	case *pid <= 0:
		return nil, 0, "", usageError(fs, "missing -pid PID: the process whose life the lock lasts (in a script: -pid $$)"), true
	}
	return lf, *pid, rest[0], 0, false
}

func holdCmd(args []string, stdout, stderr io.Writer) int {
	_, pid, _, code, stop := parseHold(args, stderr)
	if stop {
		if code != 0 { // not after -h
			fmt.Fprintf(stdout, "(exit %d)\n", code)
		}
		return code
	}
	if !processAlive(pid) {
		fmt.Fprintf(stderr, "dlock: -pid %d: no such process\n", pid)
		fmt.Fprintf(stdout, "(exit %d)\n", exitError)
		return exitError
	}
	code, out := startHolder(args, stderr)
	if code != 0 {
		fmt.Fprintf(stdout, "(exit %d)\n", code)
		return code
	}
	fmt.Fprint(stdout, out)
	return 0
}

// holderMain is the background holder: it takes the lock, reports on
// descriptor 3, and holds the lock while PID lives.
func holderMain(args []string, stderr io.Writer) int {
	report := reportFile()
	lf, pid, path, code, stop := parseHold(args, io.Discard)
	if stop {
		return code
	}
	watched := watchProcess(pid)
	opts := []dlock.Option{}
	if lf.verbose {
		opts = append(opts, dlock.WithLogger(newLogger(stderr)))
	}
	l, abs, err := lf.open(path, opts...)
	path = displayPath(path) // a URL's password is not for messages
	if err != nil {
		fmt.Fprintln(stderr, explain(err, path))
		return exitError
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	locked := make(chan error, 1)
	go func() { locked <- l.Lock(ctx) }()
	select {
	case err = <-locked:
	case <-watched:
		cancel()
		if err := <-locked; err == nil {
			l.Unlock()
		}
		fmt.Fprintf(stderr, "dlock: process %d exited while dlock hold waited for %s\n", pid, path)
		return exitError
	case sig := <-sigs:
		cancel()
		if err := <-locked; err == nil {
			l.Unlock()
		}
		return 128 + signum(sig)
	}
	var busy *dlock.BusyError
	switch {
	case errors.As(err, &busy):
		if !lf.quiet {
			say(stderr, "%s is busy: %s; gave up after %s", path, describeHolder(busy.Holder, busy.Age), busy.Waited.Round(time.Millisecond))
		}
		return lf.conflictExit
	case errors.Is(err, dlock.ErrBusy): // PATIENCE ran out inside an attempt the filesystem never answered
		if !lf.quiet {
			fmt.Fprintln(stderr, explain(err, path))
		}
		return lf.conflictExit
	case err != nil:
		fmt.Fprintln(stderr, explain(err, path))
		return exitError
	}
	fmt.Fprint(report, holdReport(abs, l.Fence(), os.Getpid()))
	report.Close()
	// Detached: the script's terminal and pipes are not ours to keep,
	// but for stderr, where a loss is reported.
	select {
	case <-watched:
	case <-sigs:
	case <-releaseAsked():
	case <-l.Lost():
		say(stderr, "lost the %s %s held for process %d: sending it SIGTERM", lf.kind(), path, pid)
		terminate(pid)
	}
	err = l.Unlock()
	hintsSent(l)
	if err != nil && !errors.Is(err, dlock.ErrLost) {
		fmt.Fprintln(stderr, explain(err, path))
		return exitError
	}
	return 0
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func releaseCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("release", stderr)
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "no arguments: the holder is named by DLOCK_HOLDER")
	}
	env, set := os.LookupEnv("DLOCK_HOLDER")
	pid, err := strconv.Atoi(env)
	switch {
	case !set || env == "":
		fmt.Fprintln(stderr, `dlock release: DLOCK_HOLDER is not set: nothing holds a lock for this script (eval the output of "dlock hold" first)`)
		return exitError
	case err != nil || pid <= 0:
		fmt.Fprintf(stderr, "dlock release: DLOCK_HOLDER=%q is not a process id: it should be what \"dlock hold\" printed (eval its output)\n", env)
		return exitError
	}
	path := os.Getenv("DLOCK_PATH")
	// A plain lock names its holder: make sure DLOCK_HOLDER is it before
	// signalling anything.
	st, serr := dlock.Inspect(path)
	plain := serr == nil && backendScheme(path) == "" // a URL's lock: its helper's to check
	if plain && (!st.Held || st.Holder.PID != pid) {
		fmt.Fprintf(stderr, "dlock release: %s is not held by the holder %d any more (%s)\n", path, pid, st)
		return exitError
	}
	if err := terminate(pid); err != nil {
		fmt.Fprintf(stderr, "dlock release: stopping the holder %d of %s: %v\n", pid, path, err)
		return exitError
	}
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "dlock release: the holder %d of %s still runs 30s after SIGTERM\n", pid, path)
			return exitError
		}
		time.Sleep(10 * time.Millisecond)
	}
	if plain {
		if st, err := dlock.Inspect(path); err == nil && st.Held && st.Holder.PID == pid {
			fmt.Fprintf(stderr, "dlock release: the holder %d exited but %s is still held by it: %s\n", pid, path, st)
			return exitError
		}
	}
	return 0
}
