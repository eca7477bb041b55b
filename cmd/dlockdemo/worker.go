package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/lockdir/dlock"
)

// roleEnv, when set to "worker" in the environment, makes dlockdemo a
// worker that the parent started, not the parent.
const roleEnv = "DLOCKDEMO_ROLE"

// The shared counter is one fixed-width record "COUNT FENCE\n", rewritten
// in place, so that a reader sees a whole record. FENCE is the fence of
// the last writer: the file refuses (by the workers' convention) a write
// whose fence is lower, which is how a resource shuts out a holder that
// lost its lock while it was paused.
const recordFormat = "%020d %020d\n"

func readCounter(path string) (count, fence uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &count, &fence); err != nil {
		return 0, 0, fmt.Errorf("counter file %s: %q: %v", path, b, err)
	}
	return count, fence, nil
}

func writeCounter(path string, count, fence uint64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, recordFormat, count, fence)
	return errors.Join(err, f.Close())
}

// worker runs the worker role: critical sections on the shared counter
// until the parent says "end", each reported to the parent as lines on
// stdout:
//
//	UNIXNANO EVENT [ARG]
//
// with events wait, enter FENCE, killme, stop, resume, commit COUNT,
// fenced FENCE, exit, lost, error MESSAGE, done.
func worker(args []string) int {
	fs := flag.NewFlagSet("dlockdemo worker", flag.ContinueOnError)
	dir := fs.String("dir", "", "the demo's directory")
	timeout := fs.Duration("timeout", 2*time.Second, "TIMEOUT")
	work := fs.Duration("work", 30*time.Millisecond, "time inside a critical section, between read and write")
	nolock := fs.Bool("nolock", false, "do the critical sections without the lock")
	victimKill := fs.Bool("kill", false, "once the file kill-now exists, wait holding the lock to be killed")
	victimStop := fs.Bool("stop", false, "once the file stop-now exists, stop (SIGSTOP) oneself holding the lock")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	emit := func(ev string, arg ...any) {
		fmt.Fprint(out, time.Now().UnixNano(), " ", ev)
		for _, a := range arg {
			fmt.Fprint(out, " ", a)
		}
		out.WriteByte('\n')
		out.Flush()
	}
	fail := func(err error) int {
		emit("error", err)
		return 1
	}
	// The parent holds our stdin open: its end means the parent is gone
	// (killed, or interrupted), and we must not go on alone.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	counter := filepath.Join(*dir, "counter")
	l, err := dlock.New(filepath.Join(*dir, "lock"), dlock.WithTimeout(*timeout))
	if err != nil {
		return fail(err)
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(*dir, name))
		return err == nil
	}
	ctx := context.Background()
	stoppedOnce := false
	// Rounds until the parent creates the file "end": so every worker
	// competes until the parent has seen enough, scenes included.
	for r := 0; !exists("end"); r++ {
		emit("wait", r)
		if !*nolock {
			if err := l.Lock(ctx); err != nil {
				return fail(err)
			}
		}
		var fence uint64
		if !*nolock {
			fence = l.Fence()
		}
		emit("enter", fence)
		n, _, err := readCounter(counter)
		if err != nil {
			return fail(err)
		}
		switch {
		case *victimKill && exists("kill-now"):
			emit("killme")
			select {} // the parent kills us now, holding the lock
		case *victimStop && !stoppedOnce && exists("stop-now"):
			stoppedOnce = true
			emit("stop")
			if err := stopSelf(); err != nil {
				return fail(err)
			}
			emit("resume")
		}
		time.Sleep(*work) // the window in which an unlocked writer loses updates
		// The fenced write: refused if a later holder has written.
		_, last, err := readCounter(counter)
		if err != nil {
			return fail(err)
		}
		if !*nolock && last > fence {
			emit("fenced", last)
		} else {
			if err := writeCounter(counter, n+1, fence); err != nil {
				return fail(err)
			}
			emit("commit", n+1)
		}
		emit("exit")
		if !*nolock {
			switch err := l.Unlock(); {
			case errors.Is(err, dlock.ErrLost):
				emit("lost")
			case err != nil:
				return fail(err)
			}
		}
		time.Sleep(rand.N(*work / 3)) // give the others a chance
	}
	emit("done")
	return 0
}
