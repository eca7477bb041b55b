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
	s := &server{out: out, results: make(chan result, 1)}
	first, ok := <-lines
	if !ok {
		return nil
	}
	if err := s.open(first, logw, open); err != nil {
		return err
	}
	defer closeLocker(s.l)
	defer s.stopTicking()
	s.write("opened " + OneLine(Redact(s.o.URL)))
	for !s.broken {
		select {
		case line, ok := <-lines:
			if !ok {
				s.broken = true
				break
			}
			s.request(line)
		case r := <-s.results:
			s.answer(r)
		case <-s.lost:
			s.stopTicking()
			s.lost = nil
			s.write("lost the backend gave the lock up: its lease could not be kept (deadline reached, or the lease was taken or deleted)")
		case <-s.tickC:
			s.beat()
		}
	}
	s.gone()
	return nil
}

// server is one helper's side of the protocol, between requests.
type server struct {
	out     io.Writer
	broken  bool // dlock is gone (a write failed, or its input ended)
	o       Options
	log     *slog.Logger
	l       dlock.Locker
	results chan result
	pending context.CancelFunc // the lock or trylock in progress
	held    bool
	lost    <-chan struct{} // the held acquisition's, until reported
	tick    *time.Ticker
	tickC   <-chan time.Time
}

// write sends one line to dlock; a failed write is the end of input.
func (s *server) write(line string) {
	if s.broken {
		return
	}
	if _, err := io.WriteString(s.out, line+"\n"); err != nil {
		s.broken = true
	}
}

// open reads the open line and makes the Locker, answering an error.
func (s *server) open(first string, logw io.Writer, open Opener) error {
	o, err := DecodeOpen(first)
	if err != nil {
		s.write(EncodeError(err))
		return err
	}
	s.o, s.log = o, slog.New(slog.DiscardHandler)
	if o.Verbose {
		s.log = slog.New(slog.NewTextHandler(logw, nil))
	}
	if s.l, err = open(o, s.log); err != nil {
		s.write(EncodeError(err))
		return err
	}
	return nil
}

// closeLocker closes l if it has a Close method.
func closeLocker(l dlock.Locker) {
	switch c := l.(type) {
	case interface{ Close() error }:
		c.Close()
	case interface{ Close() }:
		c.Close()
	}
}

func (s *server) stopTicking() {
	if s.tick != nil {
		s.tick.Stop()
		s.tick, s.tickC = nil, nil
	}
}

// request handles one line from dlock.
func (s *server) request(line string) {
	switch verb, _ := Split(line); verb {
	case "lock", "trylock":
		s.lock(verb == "trylock")
	case "cancel":
		if s.pending != nil {
			s.pending()
		}
	case "unlock":
		s.unlock()
	case "inspect":
		s.inspect()
	default:
		s.write("error " + KindOther + " unknown request " + strconv.Quote(verb))
	}
}

// lock starts a lock or trylock request, answered by answer.
func (s *server) lock(try bool) {
	if s.pending != nil {
		s.write("error " + KindOther + " a lock request is already in progress")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.pending = cancel
	l, results := s.l, s.results
	go func() {
		if try {
			ok, err := l.TryLock()
			results <- result{try: true, ok: ok, err: err}
			return
		}
		err := l.Lock(ctx)
		results <- result{ok: err == nil, err: err}
	}()
}

func (s *server) unlock() {
	if s.pending != nil {
		s.write("error " + KindOther + " a lock request is in progress: cancel it first")
		return
	}
	s.stopTicking()
	err := s.l.Unlock()
	s.held, s.lost = false, nil
	if err != nil {
		s.write(EncodeError(err))
	} else {
		s.write("unlocked")
	}
	s.log.Debug("dlock-backend: unlocked", "err", err)
}

func (s *server) inspect() {
	in, ok := s.l.(Inspector)
	if !ok {
		s.write("error " + KindOther + " this backend cannot say who holds its lock")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(s.o.Timeout, time.Second))
	h, age, isHeld, err := in.Inspect(ctx)
	cancel()
	if err != nil {
		s.write(EncodeError(err))
	} else {
		s.write(EncodeStatus(h, age, isHeld))
	}
}

// answer reports the end of a lock or trylock request.
func (s *server) answer(r result) {
	s.pending()
	s.pending = nil
	var busy *dlock.BusyError
	switch {
	case r.ok:
		s.acquired()
	case r.err == nil: // trylock: busy
		s.write(EncodeBusy(&dlock.BusyError{Path: Redact(s.o.URL)}))
	case errors.As(r.err, &busy):
		s.write(EncodeBusy(busy))
	default:
		s.write(EncodeError(r.err))
	}
}

// acquired reports an acquisition, and a loss it already suffered first.
func (s *server) acquired() {
	s.held = true
	s.lost = s.l.Lost()
	select {
	case <-s.lost: // lost already (acquired past its deadline): say so first
		s.write("lost the lock was given up as it was acquired, its deadline already past")
		s.lost = nil
	default:
		if s.o.Heartbeat > 0 {
			s.tick = time.NewTicker(s.o.Heartbeat)
			s.tickC = s.tick.C
		}
	}
	s.write("acquired " + strconv.FormatUint(s.l.Fence(), 10))
}

// beat tells dlock the helper is alive, unless a loss is to be told.
func (s *server) beat() {
	select {
	case <-s.lost:
		// reported by Serve's loop next
	default:
		s.write("alive")
	}
}

// gone is what the helper does once dlock is gone.
func (s *server) gone() {
	if s.pending != nil {
		s.pending()
		if r := <-s.results; r.ok {
			if err := s.l.Unlock(); err != nil {
				s.log.Warn("dlock-backend: releasing a lock acquired as dlock went away", "err", err)
			}
		}
	}
	if s.held {
		// Abandoned, not released: the job dlock guarded may outlive it
		// (a supervisor killed); the lease runs out after TIMEOUT.
		s.log.Warn("dlock-backend: dlock went away while holding the lock: leaving its lease to expire")
	}
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
