// Package backendproto is the line protocol between "dlock run" (or
// "dlock hold") and a backend helper program, dlock-backend-SCHEME, that
// keeps a lock whose PATH is a URL (postgres://…, etcd://…) in a server.
// The helper links the server's client library, so the dlock command does
// not: it starts the helper, found next to its own executable or on PATH,
// and talks to it over the helper's stdin and stdout.
//
// Every message is one line of UTF-8 ending in "\n": a verb, and for some
// verbs a space and an argument that runs to the end of the line (text
// with no newline, a number, or a JSON object).
//
// dlock to the helper:
//
//	open 1 {"url":…,"timeout_ms":…,"margin_ms":…,"patience_ms":…,"poll_ms":…,"heartbeat_ms":…,"verbose":…}
//	                  the first line; 1 is the protocol's version. The URL
//	                  goes here, not on the command line, so that a
//	                  password in it is not shown by ps.
//	lock              Lock with the PATIENCE given (patience_ms < 0: none)
//	trylock           one attempt
//	cancel            give up the lock or trylock in progress (it is answered
//	                  as usual: "error canceled …", or "acquired" if it won)
//	unlock            release
//	inspect           who holds the lock now (for dlock status)
//	end of input      dlock has exited or died: a lock or trylock in progress
//	                  is cancelled (and released if it won); a lock held is
//	                  abandoned, NOT released: its lease runs out after
//	                  TIMEOUT, since the job dlock guarded may still run
//	                  (its supervisor died) and must be stopped first.
//
// The helper to dlock, one answer per request, in order:
//
//	opened NAME       to open: NAME is the lock's name for people
//	                  (the URL, its password hidden): DLOCK_PATH
//	acquired FENCE    to lock or trylock: held, with this fencing token
//	busy {…}          to lock or trylock: PATIENCE ran out (a BusyWire)
//	unlocked          to unlock
//	status {…}        to inspect: a StatusWire (held, the holder, its age)
//	error KIND TEXT   to any request. KIND is one of busy, lost, notheld,
//	                  held, canceled, deadline, other; it says which of
//	                  dlock's errors TEXT matches (lost: the lock was lost
//	                  while held, as Unlock says).
//
// and, between the answers, two notices while a lock is held:
//
//	alive             every heartbeat_ms, while the helper's Locker has not
//	                  lost the lock: dlock takes a silence of
//	                  heartbeat_ms × 4 as a loss (a helper stopped or hung)
//	lost WHY          once, the moment the Locker's Lost() is closed: at its
//	                  deadline, MARGIN before another process can take the
//	                  lock over, judged by the helper on its own clock
//
// The helper's death (end of its output) is a loss too: nobody refreshes
// its lease any more, so dlock stops the job at once.
package backendproto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lockdir/dlock"
)

// Version is the protocol's version, sent in the open line.
const Version = 1

// Options are what dlock tells the helper in the open line.
type Options struct {
	URL       string        // the PATH the user gave: scheme://…
	Timeout   time.Duration // TIMEOUT
	Margin    time.Duration // MARGIN: the holder is told it lost the lock this long before it may pass on; 0: the backend's default
	Patience  time.Duration // PATIENCE for lock; < 0: no limit
	Poll      time.Duration // how often a waiter looks, where the backend polls; 0: its default
	Heartbeat time.Duration // how often to say "alive" while holding; 0: never
	Verbose   bool          // log to stderr
}

type optionsWire struct {
	URL         string `json:"url"`
	TimeoutMS   int64  `json:"timeout_ms"`
	MarginMS    int64  `json:"margin_ms,omitempty"`
	PatienceMS  int64  `json:"patience_ms"`
	PollMS      int64  `json:"poll_ms,omitempty"`
	HeartbeatMS int64  `json:"heartbeat_ms,omitempty"`
	Verbose     bool   `json:"verbose,omitempty"`
}

// EncodeOpen is the open line for o (without its newline).
func EncodeOpen(o Options) string {
	w := optionsWire{URL: o.URL, TimeoutMS: o.Timeout.Milliseconds(), MarginMS: o.Margin.Milliseconds(),
		PatienceMS: o.Patience.Milliseconds(), PollMS: o.Poll.Milliseconds(), HeartbeatMS: o.Heartbeat.Milliseconds(), Verbose: o.Verbose}
	if o.Patience < 0 {
		w.PatienceMS = -1
	}
	b, _ := json.Marshal(w)
	return fmt.Sprintf("open %d %s", Version, b)
}

// DecodeOpen reads an open line.
func DecodeOpen(line string) (Options, error) {
	verb, arg := Split(line)
	if verb != "open" {
		return Options{}, fmt.Errorf("expected the open line first, got %q", verb)
	}
	v, js, _ := strings.Cut(arg, " ")
	if v != fmt.Sprint(Version) {
		return Options{}, fmt.Errorf("protocol version %q is not supported (this helper speaks %d): install the helper of the same release as dlock", v, Version)
	}
	var w optionsWire
	if err := json.Unmarshal([]byte(js), &w); err != nil {
		return Options{}, fmt.Errorf("bad open line: %v", err)
	}
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	o := Options{URL: w.URL, Timeout: ms(w.TimeoutMS), Margin: ms(w.MarginMS), Patience: ms(w.PatienceMS),
		Poll: ms(w.PollMS), Heartbeat: ms(w.HeartbeatMS), Verbose: w.Verbose}
	if w.PatienceMS < 0 {
		o.Patience = -1
	}
	return o, nil
}

// Split splits a line into its verb and argument.
func Split(line string) (verb, arg string) {
	line = strings.TrimRight(line, "\r\n")
	verb, arg, _ = strings.Cut(line, " ")
	return verb, arg
}

// OneLine makes s fit on one line.
func OneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// Error kinds: which of dlock's errors an "error" answer matches.
const (
	KindBusy     = "busy"
	KindLost     = "lost"
	KindNotHeld  = "notheld"
	KindHeld     = "held"
	KindCanceled = "canceled"
	KindDeadline = "deadline"
	KindOther    = "other"
)

var kinds = []struct {
	kind string
	err  error
}{
	{KindBusy, dlock.ErrBusy},
	{KindLost, dlock.ErrLost},
	{KindNotHeld, dlock.ErrNotHeld},
	{KindHeld, dlock.ErrHeld},
	{KindCanceled, context.Canceled},
	{KindDeadline, context.DeadlineExceeded},
}

// EncodeError is the error line for err.
func EncodeError(err error) string {
	kind := KindOther
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			kind = k.kind
			break
		}
	}
	return "error " + kind + " " + OneLine(err.Error())
}

// RemoteError is an error the helper reported. It matches (errors.Is)
// the dlock or context error its kind names.
type RemoteError struct {
	Kind string
	Text string
}

func (e *RemoteError) Error() string { return e.Text }

// Is reports whether target is the error Kind names.
func (e *RemoteError) Is(target error) bool {
	for _, k := range kinds {
		if k.kind == e.Kind {
			return target == k.err
		}
	}
	return false
}

// DecodeError reads the argument of an error line.
func DecodeError(arg string) *RemoteError {
	kind, text, _ := strings.Cut(arg, " ")
	return &RemoteError{Kind: kind, Text: text}
}

// BusyWire is the argument of a busy answer: a dlock.BusyError.
type BusyWire struct {
	Path      string    `json:"path,omitempty"`
	PID       int       `json:"pid,omitempty"`
	Host      string    `json:"host,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Beat      time.Time `json:"beat,omitzero"`
	TimeoutMS int64     `json:"timeout_ms,omitempty"`
	Fence     uint64    `json:"fence,omitempty"`
	Unknown   bool      `json:"unknown,omitempty"`
	Entry     string    `json:"entry,omitempty"`
	AgeMS     int64     `json:"age_ms"`
	WaitedMS  int64     `json:"waited_ms"`
}

// EncodeBusy is the busy line for e.
func EncodeBusy(e *dlock.BusyError) string {
	h := e.Holder
	b, _ := json.Marshal(BusyWire{Path: e.Path, PID: h.PID, Host: h.Host, Since: h.Since, Beat: h.Beat,
		TimeoutMS: h.Timeout.Milliseconds(), Fence: h.Fence, Unknown: h.Unknown, Entry: h.Entry,
		AgeMS: e.Age.Milliseconds(), WaitedMS: e.Waited.Milliseconds()})
	return "busy " + string(b)
}

// DecodeBusy reads the argument of a busy answer.
func DecodeBusy(arg string) (*dlock.BusyError, error) {
	var w BusyWire
	if err := json.Unmarshal([]byte(arg), &w); err != nil {
		return nil, fmt.Errorf("bad busy answer: %v", err)
	}
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	return &dlock.BusyError{Path: w.Path, Age: ms(w.AgeMS), Waited: ms(w.WaitedMS), Holder: dlock.Holder{
		PID: w.PID, Host: w.Host, Since: w.Since, Beat: w.Beat, Timeout: ms(w.TimeoutMS), Fence: w.Fence,
		Unknown: w.Unknown, Entry: w.Entry}}, nil
}

// Inspector is a Locker that can say who holds its lock (pglock.Lock
// can). A helper whose Locker is none answers inspect with an error.
type Inspector interface {
	Inspect(ctx context.Context) (h dlock.Holder, age time.Duration, held bool, err error)
}

// StatusWire is the argument of a status answer.
type StatusWire struct {
	Held bool `json:"held"`
	BusyWire
}

// EncodeStatus is the status line.
func EncodeStatus(h dlock.Holder, age time.Duration, held bool) string {
	w := StatusWire{Held: held}
	if held {
		w.BusyWire = BusyWire{PID: h.PID, Host: h.Host, Since: h.Since, Beat: h.Beat, TimeoutMS: h.Timeout.Milliseconds(),
			Fence: h.Fence, Unknown: h.Unknown, Entry: h.Entry, AgeMS: age.Milliseconds()}
	}
	b, _ := json.Marshal(w)
	return "status " + string(b)
}

// DecodeStatus reads the argument of a status answer.
func DecodeStatus(arg string) (h dlock.Holder, age time.Duration, held bool, err error) {
	var w StatusWire
	if err := json.Unmarshal([]byte(arg), &w); err != nil {
		return dlock.Holder{}, 0, false, fmt.Errorf("bad status answer: %v", err)
	}
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	return dlock.Holder{PID: w.PID, Host: w.Host, Since: w.Since, Beat: w.Beat, Timeout: ms(w.TimeoutMS), Fence: w.Fence,
		Unknown: w.Unknown, Entry: w.Entry}, ms(w.AgeMS), w.Held, nil
}
