package lockdir

// The waiters' queue: predecessor-only wake-ups.
//
// Every waiter watching the lock directory would wake on every release
// (and on every acquisition and heartbeat): with 64 waiters, 64 wake-ups
// per hand-off. Instead each waiter of a local filesystem puts a ticket,
// an empty directory, in PATH/queue and watches only the ticket before
// its own; the first in line watches PATH. A release wakes the first
// waiter; when it acquires it removes its ticket, which wakes the next
// one, who now watches PATH. This is the etcd and ZooKeeper lock recipe.
// The next one knows it is first, without listing the queue, when the
// holder it then sees is its predecessor: a waiter's attempts use tokens
// that begin with its ticket's TOKEN. Otherwise its predecessor gave up
// or died, and it lists the queue to find its place.
//
// The queue only decides who is woken, never who holds the lock: that is
// still the compare-and-swap of the state entry, which any waiter may try
// at any time (every waiter also polls; one behind others looks only at
// its polls, not to take the lock from the first as it is handed over).
// So a lost, stale or foreign ticket can only delay a wake-up, never let
// two holders in. Tickets of dead waiters on this host are removed by
// their successors, at once on Linux: a waiter keeps its ticket open, and
// the close at its death is an event to the one behind (fsys.HoldOpen). A
// ticket left unchanged for TIMEOUT is removed too, and a live waiter that
// finds its ticket gone takes a new one. The waiter right behind the first
// polls at the plain interval: a first waiter stopped (^Z) with the lock
// free is passed over then.
//
//	PATH/queue/TIME.TOKEN.PID.HOSTID
//
// TIME is the waiter's clock when it joined, in nanoseconds and 20 digits,
// so names sort in arrival order (across hosts, as well as clocks agree);
// TOKEN is 16 random hex digits.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/proc"
)

const QueueDir = "queue"

// Queue is one waiter's place in a lock's queue.
type Queue struct {
	dir     string    // PATH/queue; "" when not queueing
	Lock    string    // PATH
	ticket  string    // our ticket's name, "" until taken
	open    int       // our ticket, kept open while we wait (-1: not open)
	Token   string    // ours, 16 hex digits: a waiter's attempts use tokens it begins
	Pred    string    // the predecessor we watch
	Dead    string    // a predecessor known to have exited (a zombie passes kill(pid, 0))
	Second  bool      // Pred was first in line when we last listed
	since   time.Time // when we first saw pred there
	timeout time.Duration
	foreign []string // ticket names that are not tickets: passed over
}

// NewQueue is a waiter's place in the queue of the lock at path (none
// yet: Target takes a ticket), with token, 16 hex digits, beginning every
// token its attempts use. A ticket unchanged for timeout is passed over.
func NewQueue(path, token string, timeout time.Duration) *Queue {
	return &Queue{dir: filepath.Join(path, QueueDir), Lock: path, Token: token, open: -1, timeout: timeout}
}

// Target returns the path this waiter should watch: its predecessor's
// ticket, or PATH when it is first in line (or not queueing). It takes a
// ticket if it has none (or lost it), and clears dead predecessors.
func (q *Queue) Target(now time.Time) string {
	if q.dir == "" {
		return q.Lock
	}
	if q.ticket == "" && !q.join(now) { // join first: one listing then tells our place
		return q.Lock
	}
	for range 4 {
		names, err := fsys.ReadNames(q.dir)
		if err != nil {
			q.dir = "" // no queue here (an older lock, or no access): watch PATH
			return q.Lock
		}
		slices.Sort(names)
		if q.ticket == "" || !slices.Contains(names, q.ticket) {
			if !q.join(now) {
				return q.Lock
			}
			continue
		}
		if target, ok := q.targetIn(names, now); ok {
			return target
		}
	}
	return q.Lock
}

// targetIn is Target for one sorted listing of the queue that holds our
// ticket: false when the predecessor it found was dead or stuck, and
// removed (list again).
func (q *Queue) targetIn(names []string, now time.Time) (string, bool) {
	pred, ahead := "", 0
	for _, n := range names {
		if n < q.ticket && IsTicket(n) && !slices.Contains(q.foreign, n) {
			pred, ahead = n, ahead+1 // the newest before ours
		}
	}
	q.Second = ahead == 1
	if pred == "" {
		q.Pred = ""
		return q.Lock, true
	}
	if pred != q.Pred {
		q.Pred, q.since = pred, now
	}
	if !ticketDead(pred) && pred != q.Dead && now.Sub(q.since) < q.timeout {
		return filepath.Join(q.dir, pred), true
	}
	// Dead or stuck: remove it. What rmdir refuses (a file, a
	// directory with something in it) is not a ticket of ours: it
	// stays, and is passed over.
	if err := fsys.RemoveDir(filepath.Join(q.dir, pred)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.foreign = append(q.foreign, pred)
	}
	q.Pred = ""
	return "", false
}

// PredHolds reports whether the holder just seen, of acquisition token
// token, is the predecessor we watched: then it left the queue because it
// acquired, and we are first in line. (A waiter's attempts use tokens
// begun by its ticket's token.)
func (q *Queue) PredHolds(token string) bool {
	f := strings.Split(q.Pred, ".")
	return len(f) == 4 && token != "" && strings.HasPrefix(token, f[1])
}

func (q *Queue) join(now time.Time) bool {
	id := Self()
	name := fmt.Sprintf("%020d.%s.%d.%s", max(now.UnixNano(), 0), q.Token, id.PID, id.HostID)
	path := filepath.Join(q.dir, name)
	if err := os.Mkdir(path, 0o755); err != nil {
		q.dir = ""
		return false
	}
	fsys.CloseHeld(q.open) // a ticket we lost
	q.ticket, q.open = name, fsys.HoldOpen(path)
	return true
}

// Leave removes our ticket, waking our successor: the removal, then the
// close, whose events come as one (see fsys.HoldOpen).
func (q *Queue) Leave() {
	if q.dir != "" && q.ticket != "" {
		fsys.RemoveDir(filepath.Join(q.dir, q.ticket))
	}
	fsys.CloseHeld(q.open)
	q.ticket, q.open = "", -1
}

// IsTicket reports whether name looks like a ticket; anything else in the
// queue directory is ignored.
func IsTicket(name string) bool {
	f := strings.Split(name, ".")
	return len(f) == 4 && len(f[0]) == 20 && IsHex(f[1], 16, 16)
}

// TicketPID is the process id of a ticket's waiter, when it ran on this
// host. (A ticket carries no start time: the pid may have been reused
// since, which only leaves a dead ticket to a later look.)
func TicketPID(name string) (int, bool) {
	f := strings.Split(name, ".")
	if len(f) != 4 || f[3] != Self().HostID || f[3] == "0" {
		return 0, false
	}
	pid, err := strconv.Atoi(f[2])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// ticketDead reports whether a ticket's waiter ran on this host and no
// process has its pid. (An exiting or unreaped one still has it: the
// waiter behind watches it end, see wait.)
func ticketDead(name string) bool {
	pid, ok := TicketPID(name)
	return ok && !proc.PIDAlive(pid)
}

// IsTicketPath reports whether path is a ticket in a lock's queue.
func IsTicketPath(path string) bool {
	dir, name := filepath.Split(path)
	return IsTicket(name) && filepath.Base(dir) == QueueDir
}
