package dlock

// A lock directory as this package sees it: the state entry an attempt
// found and its holder, and what one look shows, for error messages.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/proc"
)

// onThisHost reports whether h ran on this host, in this pid namespace.
func onThisHost(h Holder) bool {
	id := lockdir.Self()
	return !h.Unknown && id.HostID != "0" && h.HostID == id.HostID
}

// provablyDead reports whether h is provably gone: it ran on this host (same
// boot, same pid namespace) and its process no longer exists, is a zombie,
// or is another process with the same pid.
func provablyDead(h Holder) bool {
	if !onThisHost(h) {
		return false
	}
	start, alive, known := proc.ProcessStart(h.PID)
	if !known {
		return false
	}
	if !alive {
		return true
	}
	return start != 0 && h.pstart != 0 && start != h.pstart
}

// entry is a state entry as an attempt saw it: lockdir's parsed entry,
// with the holder as the API gives it.
type entry struct {
	name   string
	free   bool
	queued bool   // a free entry handed to the waiters' queue (free.E.q)
	fence  uint64 // for free and held entries that parsed
	holder Holder // for held entries (Unknown if it did not parse)
	// For an unknown state an attempt returns: since when it was seen.
	observed time.Time
}

// fromDir is the entry lockdir parsed.
func fromDir(e lockdir.Entry) entry {
	return entry{name: e.Name, free: e.Free, queued: e.Queued, fence: e.Fence, holder: holderOf(e.Holder)}
}

// parseEntry parses a state entry name (lockdir.Parse).
func parseEntry(name string) entry { return fromDir(lockdir.Parse(name)) }

// holderOf is the Holder of a parsed owner record.
func holderOf(h lockdir.Holder) Holder {
	return Holder{PID: h.PID, Host: h.Host, HostID: h.HostID, Since: h.Since, Beat: h.Beat, Timeout: h.Timeout,
		Fence: h.Fence, Token: h.Token, Entry: h.Entry, Unknown: h.Unknown, Sequence: h.Sequence, pstart: h.PStart}
}

// dirState is one listing of a lock directory (lockdir.Read), with its
// state entry as an attempt sees it.
type dirState struct {
	lockdir.State
	e entry // the state entry, when Entries == 1
}

// readState lists the lock directory at path (lockdir.Read), and refuses
// a directory no waiting can make a lock (State.Check).
func readState(path string) (dirState, error) {
	st, err := lockdir.Read(path)
	if err == nil {
		err = st.Check(path)
	}
	return dirState{st, fromDir(st.E)}, err
}

// knownToken is h's acquisition token, "" for an unknown holder.
func knownToken(h Holder) string {
	if h.Unknown {
		return ""
	}
	return h.Token
}

// describeWait bounds how long an error message waits to say who holds a
// lock now: a lock lost to a hung mount must be reported without it.
const describeWait = time.Second

// describeSoon says what the lock directory at path shows now, or that the
// filesystem did not answer within describeWait.
func describeSoon(path string) string {
	ch := make(chan string, 1)
	go func() { ch <- describeState(path) }()
	t := time.NewTimer(describeWait)
	defer t.Stop()
	select {
	case s := <-ch:
		return s
	case <-t.C:
		return fmt.Sprintf("who holds it now is unknown: the filesystem did not answer within %v", describeWait)
	}
}

// describeState says what one look at the lock directory shows.
func describeState(path string) string {
	st, err := readState(path)
	switch {
	case err != nil:
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return fmt.Sprintf("the lock directory cannot be read now (%v)", err)
	case st.Missing:
		return "the lock directory is gone"
	case st.Entries == 1 && st.e.free:
		return "it is free now"
	case st.Entries == 1:
		return "it is held by " + st.e.holder.String() + " now"
	case st.Entries == 0:
		return "it shows no state entry now"
	}
	return fmt.Sprintf("it shows %d state entries now", st.Entries)
}

// Holder describes who holds a lock, as recorded in the lock itself.
// Fields that the record does not give are zero.
type Holder struct {
	PID      int           // process id of the holder, on its host
	Host     string        // host name of the holder (sanitised)
	HostID   string        // boot and pid-namespace identity of the holder's host
	Since    time.Time     // when the holder acquired the lock, by its clock
	Beat     time.Time     // when the holder last refreshed the lock, by its clock
	Timeout  time.Duration // the holder's TIMEOUT: unrefreshed this long, the lock is stale
	Fence    uint64        // the fencing token of the holder's acquisition
	Token    string        // the random token of the holder's acquisition
	Entry    string        // the raw state entry name
	Unknown  bool          // the entry could not be parsed: nothing above is known
	Sequence uint64        // the holder's heartbeat count

	pstart uint64 // holder process start time, for liveness checks
}

// String describes the holder for error messages: "pid 42 on host web1".
func (h Holder) String() string {
	switch {
	case h.Unknown && h.Entry == "":
		return "an unknown holder (an empty lock directory)"
	case h.Unknown:
		return fmt.Sprintf("an unknown holder (entry %q)", h.Entry)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d on host %s", h.PID, h.Host)
	return b.String()
}
