package backendproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockdir/dlock"
)

func TestOpenRoundTrip(t *testing.T) {
	for _, o := range []Options{
		{URL: "postgres://u:p@db/app?x=1#migrate", Timeout: 10 * time.Second, Margin: 3 * time.Second, Patience: -1, Poll: 100 * time.Millisecond, Heartbeat: 125 * time.Millisecond, Verbose: true},
		{URL: "etcd://h:2379/k", Timeout: 2500 * time.Millisecond, Patience: 0},
	} {
		line := EncodeOpen(o)
		if strings.Contains(line, "\n") {
			t.Fatalf("open line has a newline: %q", line)
		}
		got, err := DecodeOpen(line)
		if err != nil || got != o {
			t.Errorf("DecodeOpen(EncodeOpen(%+v)) = %+v, %v", o, got, err)
		}
	}
	if _, err := DecodeOpen(`open 2 {"url":"x"}`); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("version 2 accepted: %v", err)
	}
	if _, err := DecodeOpen("lock"); err == nil {
		t.Error("a lock line taken for open")
	}
}

func TestErrorKinds(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("x: %w", dlock.ErrBusy), dlock.ErrBusy},
		{&dlock.LostError{Path: "p", Why: "w\nsecond line"}, dlock.ErrLost},
		{fmt.Errorf("x: %w", dlock.ErrNotHeld), dlock.ErrNotHeld},
		{fmt.Errorf("x: %w", dlock.ErrHeld), dlock.ErrHeld},
		{context.Canceled, context.Canceled},
		{fmt.Errorf("y: %w", context.DeadlineExceeded), context.DeadlineExceeded},
	} {
		line := EncodeError(c.err)
		verb, arg := Split(line)
		re := DecodeError(arg)
		if verb != "error" || !errors.Is(re, c.want) || strings.Contains(line, "\n") || re.Error() != OneLine(c.err.Error()) {
			t.Errorf("%v: line %q decodes to %v (kind %s)", c.err, line, re, re.Kind)
		}
	}
	if re := DecodeError(EncodeError(errors.New("boom"))[len("error "):]); errors.Is(re, dlock.ErrBusy) || re.Kind != KindOther {
		t.Errorf("a plain error: %+v", re)
	}
}

func TestBusyRoundTrip(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e := &dlock.BusyError{Path: "t:n", Age: 1500 * time.Millisecond, Waited: 2 * time.Second,
		Holder: dlock.Holder{PID: 42, Host: "web1", Since: since, Timeout: 10 * time.Second, Fence: 7}}
	verb, arg := Split(EncodeBusy(e))
	got, err := DecodeBusy(arg)
	if verb != "busy" || err != nil || got.Error() != e.Error() {
		t.Errorf("busy round trip: %v, %v; want %v", got, err, e)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	h := dlock.Holder{PID: 42, Host: "web1", Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Timeout: 10 * time.Second, Fence: 7}
	verb, arg := Split(EncodeStatus(h, 1500*time.Millisecond, true))
	gh, age, held, err := DecodeStatus(arg)
	if verb != "status" || err != nil || !held || gh != h || age != 1500*time.Millisecond {
		t.Errorf("status round trip: %+v %v %v %v", gh, age, held, err)
	}
	if _, arg := Split(EncodeStatus(h, time.Second, false)); arg != `{"held":false,"age_ms":0,"waited_ms":0}` {
		t.Errorf("a free lock's status: %s", arg)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@db/app#m":          "postgres://u:xxxxx@db/app#m",
		"postgres://db/app?password=secret&a=b": "postgres://db/app?password=xxxxx&a=b",
		"postgres://u:p@ss@db/a?b=c#n":          "postgres://u:xxxxx@db/a?b=c#n",
		"postgres://u@db/a#pass:x@y":            "postgres://u@db/a#pass:x@y",
		"fake://u:pw@/tmp/x":                    "fake://u:xxxxx@/tmp/x",
		"etcd://h:2379/k":                       "etcd://h:2379/k",
		"/var/lock/x":                           "/var/lock/x",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeLocker is a Locker whose Lock waits for the test.
type fakeLocker struct {
	mu      sync.Mutex
	grant   chan error // Lock returns what is sent here
	lost    chan struct{}
	fence   uint64
	unlocks int
	closed  bool
}

func (f *fakeLocker) Lock(ctx context.Context) error {
	select {
	case err := <-f.grant:
		if err == nil {
			f.mu.Lock()
			f.fence++
			f.lost = make(chan struct{})
			f.mu.Unlock()
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeLocker) TryLock() (bool, error) { return false, nil }

func (f *fakeLocker) Unlock() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unlocks++
	select {
	case <-f.lost:
		return &dlock.LostError{Path: "fake", Fence: f.fence, Why: "test"}
	default:
		return nil
	}
}

func (f *fakeLocker) Lost() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lost
}

func (f *fakeLocker) Fence() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fence
}

func (f *fakeLocker) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

func (f *fakeLocker) count() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unlocks, f.closed
}

// session is Serve on pipes, with the test as dlock.
type session struct {
	t    *testing.T
	in   *io.PipeWriter
	out  *bufio.Scanner
	done chan error
	f    *fakeLocker
}

func newSession(t *testing.T, o Options) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, out: bufio.NewScanner(outR), done: make(chan error, 1),
		f: &fakeLocker{grant: make(chan error), lost: make(chan struct{})}}
	go func() {
		s.done <- Serve(inR, outW, io.Discard, func(Options, *slog.Logger) (dlock.Locker, error) { return s.f, nil })
		outW.Close()
	}()
	s.send(EncodeOpen(o))
	s.expect("opened " + Redact(o.URL))
	return s
}

func (s *session) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// expect reads the next line other than "alive" and checks its start.
func (s *session) expect(prefix string) string {
	s.t.Helper()
	for s.out.Scan() {
		if l := s.out.Text(); l != "alive" {
			if !strings.HasPrefix(l, prefix) {
				s.t.Fatalf("got %q, want %q...", l, prefix)
			}
			return l
		}
	}
	s.t.Fatalf("output ended, want %q", prefix)
	return ""
}

func (s *session) end() {
	s.t.Helper()
	s.in.Close()
	for s.out.Scan() {
	}
	if err := <-s.done; err != nil {
		s.t.Fatalf("Serve: %v", err)
	}
}

func TestServeLockLostUnlock(t *testing.T) {
	s := newSession(t, Options{URL: "fake://u:pw@x/y", Timeout: time.Second, Patience: -1})
	s.send("lock")
	s.f.grant <- nil
	s.expect("acquired 1")
	close(s.f.lost)
	s.expect("lost ")
	s.send("unlock")
	if l := s.expect("error lost "); !strings.Contains(l, "fence 1") {
		t.Errorf("unlock of a lost lock: %q", l)
	}
	s.send("lock")
	s.f.grant <- nil
	s.expect("acquired 2")
	s.send("unlock")
	s.expect("unlocked")
	s.end()
	if n, closed := s.f.count(); n != 2 || !closed {
		t.Errorf("%d unlocks, closed %v; want 2, true", n, closed)
	}
}

func TestServeHeartbeat(t *testing.T) {
	s := newSession(t, Options{URL: "fake://x", Timeout: time.Second, Patience: -1, Heartbeat: time.Millisecond})
	s.send("lock")
	s.f.grant <- nil
	s.expect("acquired")
	for i := 0; i < 3; i++ {
		if !s.out.Scan() || s.out.Text() != "alive" {
			t.Fatalf("beat %d: %q", i, s.out.Text())
		}
	}
	s.send("unlock")
	s.expect("unlocked")
	s.end()
}

func TestServeCancelAndBusy(t *testing.T) {
	s := newSession(t, Options{URL: "fake://x", Timeout: time.Second, Patience: -1})
	s.send("lock")
	s.send("lock")
	s.expect("error other a lock request is already in progress")
	s.send("cancel")
	s.expect("error canceled ")
	s.send("lock")
	s.f.grant <- &dlock.BusyError{Path: "p", Holder: dlock.Holder{PID: 9, Host: "h"}}
	if l := s.expect("busy "); !strings.Contains(l, `"pid":9`) {
		t.Errorf("busy line: %q", l)
	}
	s.send("trylock")
	s.expect("busy ")
	s.send("inspect")
	s.expect("error other this backend cannot say who holds its lock")
	s.send("frobnicate")
	s.expect(`error other unknown request "frobnicate"`)
	s.end()
}

// dlock gone while the helper holds the lock: abandoned, not released;
// gone while it waits: the wait is cancelled, nothing released.
func TestServeEndOfInput(t *testing.T) {
	s := newSession(t, Options{URL: "fake://x", Timeout: time.Second, Patience: -1})
	s.send("lock")
	s.f.grant <- nil
	s.expect("acquired")
	s.end()
	if n, closed := s.f.count(); n != 0 || !closed {
		t.Errorf("held at the end of input: %d unlocks, closed %v; want 0 (abandoned), true", n, closed)
	}
	s = newSession(t, Options{URL: "fake://x", Timeout: time.Second, Patience: -1})
	s.send("lock")
	s.end()
	if n, _ := s.f.count(); n != 0 {
		t.Errorf("waiting at the end of input: %d unlocks", n)
	}
}

func TestServeBadOpen(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(inR, outW, io.Discard, func(Options, *slog.Logger) (dlock.Locker, error) {
			return nil, errors.New("cannot open")
		})
		outW.Close()
	}()
	sc := bufio.NewScanner(outR)
	io.WriteString(inW, `open 1 {"url":"x://y"}`+"\n")
	if !sc.Scan() || sc.Text() != "error other cannot open" {
		t.Errorf("open failing: %q", sc.Text())
	}
	if err := <-done; err == nil {
		t.Error("Serve returned no error")
	}
}
