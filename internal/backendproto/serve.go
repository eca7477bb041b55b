package backendproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockdir/dlock"
)

// Opener makes the helper's Locker from the options of the open line;
// log is where it may log (it discards unless dlock runs with -v). If the
// Locker has a Close method, Serve calls it at the end.
type Opener func(o Options, log *slog.Logger) (dlock.Locker, error)

// Main is the whole main function of a helper program: it serves the
// protocol on stdin and stdout and returns the exit status.
func Main(open Opener) int {
	// The helper is in a process group of its own, but a terminal's
	// signals must not end it before dlock has stopped the job; a write
	// to a dlock that died must fail, not kill it.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	prog := filepath.Base(os.Args[0])
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "%s keeps the lock of a URL PATH for dlock run and dlock hold, which start it;\n"+
			"it takes no arguments and speaks dlock's backend protocol (version %d) on stdin and stdout.\n", prog, Version)
		return 2
	}
	if err := Serve(os.Stdin, os.Stdout, os.Stderr, open); err != nil {
		return 1 // answered to dlock, which says it
	}
	return 0
}

type result struct {
	try bool
	ok  bool
	err error
}

// Serve answers the requests read from in on out (see the package doc)
// with the Locker open makes, until in ends. Logs go to logw when dlock
// asked for them. It returns an error only when the open line was bad
// or open failed, after answering it with that error.
func Serve(in io.Reader, out io.Writer, logw io.Writer, open Opener) error {
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	broken := false
	write := func(s string) {
		if broken {
			return
		}
		if _, err := io.WriteString(out, s+"\n"); err != nil {
			broken = true // dlock is gone: treated as the end of input
		}
	}

	first, ok := <-lines
	if !ok {
		return nil
	}
	o, err := DecodeOpen(first)
	if err != nil {
		write(EncodeError(err))
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if o.Verbose {
		log = slog.New(slog.NewTextHandler(logw, nil))
	}
	l, err := open(o, log)
	if err != nil {
		write(EncodeError(err))
		return err
	}
	defer func() {
		switch c := l.(type) {
		case interface{ Close() error }:
			c.Close()
		case interface{ Close() }:
			c.Close()
		}
	}()
	write("opened " + OneLine(Redact(o.URL)))

	var (
		results = make(chan result, 1)
		pending context.CancelFunc // the lock or trylock in progress
		held    bool
		lost    <-chan struct{} // the held acquisition's, until reported
		tick    *time.Ticker
		tickC   <-chan time.Time
	)
	stopTicking := func() {
		if tick != nil {
			tick.Stop()
			tick, tickC = nil, nil
		}
	}
	defer stopTicking()
	for !broken {
		select {
		case line, ok := <-lines:
			if !ok {
				broken = true
				break
			}
			switch verb, _ := Split(line); verb {
			case "lock", "trylock":
				if pending != nil {
					write("error " + KindOther + " a lock request is already in progress")
					break
				}
				ctx, cancel := context.WithCancel(context.Background())
				pending = cancel
				try := verb == "trylock"
				go func() {
					if try {
						ok, err := l.TryLock()
						results <- result{try: true, ok: ok, err: err}
						return
					}
					err := l.Lock(ctx)
					results <- result{ok: err == nil, err: err}
				}()
			case "cancel":
				if pending != nil {
					pending()
				}
			case "unlock":
				if pending != nil {
					write("error " + KindOther + " a lock request is in progress: cancel it first")
					break
				}
				stopTicking()
				err := l.Unlock()
				held, lost = false, nil
				if err != nil {
					write(EncodeError(err))
				} else {
					write("unlocked")
				}
				log.Debug("dlock-backend: unlocked", "err", err)
			case "inspect":
				in, ok := l.(Inspector)
				if !ok {
					write("error " + KindOther + " this backend cannot say who holds its lock")
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), max(o.Timeout, time.Second))
				h, age, isHeld, err := in.Inspect(ctx)
				cancel()
				if err != nil {
					write(EncodeError(err))
				} else {
					write(EncodeStatus(h, age, isHeld))
				}
			default:
				write("error " + KindOther + " unknown request " + strconv.Quote(verb))
			}
		case r := <-results:
			pending()
			pending = nil
			var busy *dlock.BusyError
			switch {
			case r.ok:
				held = true
				lost = l.Lost()
				select {
				case <-lost: // lost already (acquired past its deadline): say so first
					write("lost the lock was given up as it was acquired, its deadline already past")
					lost = nil
				default:
					if o.Heartbeat > 0 {
						tick = time.NewTicker(o.Heartbeat)
						tickC = tick.C
					}
				}
				write("acquired " + strconv.FormatUint(l.Fence(), 10))
			case r.err == nil: // trylock: busy
				write(EncodeBusy(&dlock.BusyError{Path: Redact(o.URL)}))
			case errors.As(r.err, &busy):
				write(EncodeBusy(busy))
			default:
				write(EncodeError(r.err))
			}
		case <-lost:
			stopTicking()
			lost = nil
			write("lost the backend gave the lock up: its lease could not be kept (deadline reached, or the lease was taken or deleted)")
		case <-tickC:
			select {
			case <-lost:
				// reported by the case above next
			default:
				write("alive")
			}
		}
	}
	// dlock is gone.
	if pending != nil {
		pending()
		if r := <-results; r.ok {
			if err := l.Unlock(); err != nil {
				log.Warn("dlock-backend: releasing a lock acquired as dlock went away", "err", err)
			}
		}
	}
	if held {
		// Abandoned, not released: the job dlock guarded may outlive it
		// (a supervisor killed); the lease runs out after TIMEOUT.
		log.Warn("dlock-backend: dlock went away while holding the lock: leaving its lease to expire")
	}
	return nil
}

// Redact hides the password of a URL, for messages and DLOCK_PATH: the
// one after "USER:" in its authority, and a query parameter password=.
// (By hand, not with net/url, which would grow the dlock command by a
// tenth.)
func Redact(raw string) string {
	const hidden = "xxxxx"
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	auth := i + 3
	end := len(raw)
	if j := strings.IndexAny(raw[auth:], "/?#"); j >= 0 {
		end = auth + j
	}
	out := raw
	if at := strings.LastIndex(raw[auth:end], "@"); at >= 0 {
		if colon := strings.Index(raw[auth:auth+at], ":"); colon >= 0 {
			out = raw[:auth+colon+1] + hidden + raw[auth+at:]
		}
	}
	// password=... in the query (before any #fragment)
	q := strings.Index(out, "?")
	if q < 0 {
		return out
	}
	frag := len(out)
	if h := strings.Index(out[q:], "#"); h >= 0 {
		frag = q + h
	}
	query := out[q+1 : frag]
	parts := strings.Split(query, "&")
	for k, p := range parts {
		if strings.HasPrefix(p, "password=") {
			parts[k] = "password=" + hidden
		}
	}
	return out[:q+1] + strings.Join(parts, "&") + out[frag:]
}
