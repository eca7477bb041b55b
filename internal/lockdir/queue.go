package lockdir

// The waiters' queue: who is woken, and who is handed a free lock.
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
// On a network filesystem no watch sees another client's change, so
// every waiter polls PATH; it still takes a ticket (a polled queue,
// NewPolledQueue), so that the lock goes round the clients in turn
// instead of to whoever polls first, or to a releaser that locks again at
// once. The rules, for every filesystem:
//
//   - A holder that knows of waiters lists the queue when it releases,
//     and if it finds a ticket not its own it releases to free.E.q
//     instead of free.E (names.go): the lock is handed to the queue. It
//     knows of waiters when it waited in a polled queue itself, when it
//     took a free.E.q, or when it held for at least its poll interval (a
//     waiter may have come meanwhile). A lock taken and released at once
//     with nobody waiting lists nothing: the uncontended Lock and Unlock
//     cost no more server operations than before. Nor does a hand-off
//     within a watched local queue (its first in line is woken at the
//     release and takes the lock at once): a herd of 64 waiters would pay
//     a listing of 64 tickets per hand-off.
//   - A newcomer (the first attempt of a Lock call, such as a fresh
//     `dlock run`) that lists PATH and finds free.E.q does not take it:
//     it queues, and waits its turn. The listing it makes anyway tells it
//     (no extra operation); a free.E it takes at once (nobody who knew of
//     waiters released it). TryLock, and a Lock with a PATIENCE of 0,
//     make one attempt and take any free entry: they never queue.
//   - A waiter in the queue that finds the lock free (free.E or
//     free.E.q) takes it if it is first in line: on a watched local
//     filesystem its watch says so; on a polled queue it lists the queue
//     (First), an operation made only when the lock is seen free. If it
//     is not first, it defers to the first in line for a grant window
//     (GrantWindow: twice the first's poll interval, which its ticket
//     carries, and 200 ms) counted from when it first saw that very
//     free entry; if the lock is still free after it, the first in line is
//     not polling (stopped, dead on another host, cut off): the waiter
//     passes it over (PassOver removes its ticket: a live waiter that
//     finds its ticket gone takes a new one, at the back) and takes the
//     lock.
//
// The queue only decides who is woken and who is handed a free lock,
// never who holds it: that is still the compare-and-swap of the state
// entry, which any waiter may try at any time (every waiter also polls;
// one behind others looks only at its polls, not to take the lock from the
// first as it is handed over). So a lost, stale, foreign or paused ticket
// can only delay a hand-off, by one grant window at most, never let two
// holders in, and a lock handed to the queue is still taken by anyone
// who waited its grant window out.
// A passed-over ticket is removed, so it delays one hand-off only.
// Tickets of dead waiters on this host are removed by their successors,
// at once on Linux: a waiter keeps its ticket open, and the close at its
// death is an event to the one behind (fsys.HoldOpen). In a watched
// queue a predecessor's ticket left unchanged for TIMEOUT is removed too;
// a live waiter that finds its ticket gone takes a new one. The waiter
// right behind the first polls at the plain interval: a first waiter
// stopped (^Z) with the lock free is passed over at its poll after the
// grant window (200 ms for a watched waiter, which events wake).
//
// Every look at the queue is a listing through a fresh open of its
// directory (fsys.ReadNames), which an NFS client revalidates with the
// server (close-to-open); a FUSE client that caches listings (sshfs's
// default dir_cache) may show another mount's tickets late: the turns
// are then only as fair as that listing, and never less safe.
//
// What it costs, in operations at a network filesystem's server: a
// waiter's mkdir of its ticket and rmdir when it leaves; a holder that
// knows of waiters, one listing of the queue at its release; a waiter
// that finds the lock free, one listing of the queue (First) before it
// takes it. A poll of a held lock costs what it did (one look), and an
// uncontended Lock and Unlock nothing more.
//
//	PATH/queue/TIME.TOKEN.PID.HOSTID.POLL
//
// TIME is the waiter's clock when it joined, in nanoseconds and 20 digits,
// so names sort in arrival order (across hosts, as well as clocks agree);
// TOKEN is 16 random hex digits; POLL the waiter's poll interval in
// nanoseconds (for the grant window), 0 for a waiter of a watched local
// queue, which events wake at once. Tickets of versions before POLL
// have four fields, and are read with the default poll interval; those
// versions ignore five-field tickets (anything in the queue that is not
// a ticket is), and read free.E.q as a held entry of an unknown holder,
// which they reclaim after TIMEOUT: a lock shared by both versions never
// has two holders, but an older waiter may wait TIMEOUT for a lock handed
// to the queue.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/proc"
)

const QueueDir = "queue"

// DefaultTicketPoll is the poll interval assumed for a ticket that names
// none (an older version's): dlock's default.
const DefaultTicketPoll = 100 * time.Millisecond

// GrantWindow is how long a waiter defers to the first in line, whose
// poll interval is poll, before it takes a free lock itself: two polls
// (its timer, then its looks, a listing of the queue and the rename, on
// a loaded machine or a slow server) and 200 ms. Only a first in line
// that does not take the lock (stopped, dead, cut off) costs it.
func GrantWindow(poll time.Duration) time.Duration {
	return 2*poll + 200*time.Millisecond
}

// Queue is one waiter's place in a lock's queue. Its methods may be
// called from the waiter and from an attempt it abandoned (a hung
// mount): mu serialises them.
type Queue struct {
	mu      sync.Mutex
	polled  bool          // a polled queue: no watch, First lists
	poll    time.Duration // ours, on our ticket
	dir     string        // PATH/queue; "" when not queueing
	Lock    string        // PATH
	ticket  string        // our ticket's name, "" until taken
	open    int           // our ticket, kept open while we wait (-1: not open)
	Token   string        // ours, 16 hex digits: a waiter's attempts use tokens it begins
	Pred    string        // the predecessor we watch
	Dead    string        // a predecessor known to have exited (a zombie passes kill(pid, 0))
	Second  bool          // Pred was first in line when we last listed
	since   time.Time     // when we first saw pred there
	timeout time.Duration
	foreign []string // ticket names that are not tickets: passed over
}

// NewQueue is a waiter's place in the queue of the lock at path (none
// yet: Target takes a ticket), with token, 16 hex digits, beginning every
// token its attempts use, and poll its poll interval. A ticket unchanged
// for timeout is passed over.
func NewQueue(path, token string, poll, timeout time.Duration) *Queue {
	return &Queue{dir: filepath.Join(path, QueueDir), Lock: path, Token: token, open: -1, poll: poll, timeout: timeout}
}

// NewPolledQueue is NewQueue for a waiter that polls PATH (a network
// filesystem, or watching turned off): it watches no predecessor, and
// finds out whether it is first in line when the lock is free (First).
// Its ticket carries poll; a watched waiter's carries 0 (events wake it).
func NewPolledQueue(path, token string, poll, timeout time.Duration) *Queue {
	q := NewQueue(path, token, poll, timeout)
	q.polled = true
	return q
}

// Polled reports whether q is a polled queue.
func (q *Queue) Polled() bool { return q.polled }

// Target returns the path this waiter should watch: its predecessor's
// ticket, or PATH when it is first in line (or not queueing, or in a
// polled queue). It takes a ticket if it has none (or lost it), and
// clears dead predecessors.
func (q *Queue) Target(now time.Time) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dir == "" {
		return q.Lock
	}
	if q.polled {
		if q.ticket == "" {
			q.join(now)
		}
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
	// Dead or stuck: remove it.
	q.remove(pred)
	q.Pred = ""
	return "", false
}

// PredHolds reports whether the holder just seen, of acquisition token
// token, is the predecessor we watched: then it left the queue because it
// acquired, and we are first in line. (A waiter's attempts use tokens
// begun by its ticket's token.)
func (q *Queue) PredHolds(token string) bool {
	f := strings.Split(q.Pred, ".")
	return len(f) >= 4 && token != "" && strings.HasPrefix(token, f[1])
}

func (q *Queue) join(now time.Time) bool {
	id := Self()
	poll := time.Duration(0) // woken by events: no poll to wait for
	if q.polled {
		poll = max(q.poll, 0)
	}
	name := fmt.Sprintf("%020d.%s.%d.%s.%d", max(now.UnixNano(), 0), q.Token, id.PID, id.HostID, poll)
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
// close, whose events come as one (see fsys.HoldOpen). The wait is over:
// nothing joins the queue again (an attempt it abandoned may still ask).
func (q *Queue) Leave() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dir != "" && q.ticket != "" {
		fsys.RemoveDir(filepath.Join(q.dir, q.ticket))
	}
	fsys.CloseHeld(q.open)
	q.ticket, q.open, q.dir = "", -1, ""
}

// IsTicket reports whether name looks like a ticket (of this version, or
// of one before POLL); anything else in the queue directory is ignored.
func IsTicket(name string) bool {
	f := strings.Split(name, ".")
	if len(f) == 5 {
		if _, ok := parseDecimal(f[4]); !ok {
			return false
		}
	}
	return (len(f) == 4 || len(f) == 5) && len(f[0]) == 20 && IsHex(f[1], 16, 16)
}

// TicketPoll is the poll interval a ticket's waiter named (0: a watched
// waiter, which events wake), or DefaultTicketPoll for a ticket that
// names none. It is bounded by a minute: a waiter that polls less often
// than that gets no longer grant.
func TicketPoll(name string) time.Duration {
	f := strings.Split(name, ".")
	if len(f) == 5 {
		if ns, ok := parseDecimal(f[4]); ok {
			return min(time.Duration(min(ns, 1<<62)), time.Minute)
		}
	}
	return DefaultTicketPoll
}

// TicketPID is the process id of a ticket's waiter, when it ran on this
// host. (A ticket carries no start time: the pid may have been reused
// since, which only leaves a dead ticket to a later look.)
func TicketPID(name string) (int, bool) {
	f := strings.Split(name, ".")
	if len(f) != 4 && len(f) != 5 || f[3] != Self().HostID || f[3] == "0" {
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

// First lists the queue of a waiter in a polled queue (or one that must
// know without its watch) and reports whether its ticket is the first in
// line. If not, head is the first ticket, whose waiter the lock is
// handed to first. Tickets of dead waiters on this host are removed on
// the way; a waiter whose ticket is gone (passed over) takes a new one,
// at the back. A queue that cannot be listed is no queue: first.
func (q *Queue) First(now time.Time) (first bool, head string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dir == "" {
		return true, ""
	}
	for range 4 {
		names, err := fsys.ReadNames(q.dir)
		if err != nil {
			return true, ""
		}
		slices.Sort(names)
		if q.ticket == "" || !slices.Contains(names, q.ticket) {
			if !q.join(now) {
				return true, ""
			}
			continue
		}
		head, retry := q.headIn(names)
		if !retry {
			return head == "", head
		}
	}
	return true, ""
}

// headIn is the first live ticket before ours in a sorted listing, or
// "": retry when it removed a dead one (list again).
func (q *Queue) headIn(names []string) (head string, retry bool) {
	for _, n := range names {
		if n >= q.ticket {
			break
		}
		if !IsTicket(n) || slices.Contains(q.foreign, n) {
			continue
		}
		if ticketDead(n) {
			q.remove(n)
			return "", true
		}
		return n, false
	}
	return "", false
}

// PassOver removes the ticket name, of a first waiter that let the lock
// stay free for its grant window: it is not polling. If it is alive
// after all, it finds its ticket gone and takes a new one.
func (q *Queue) PassOver(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dir != "" && IsTicket(name) && name != q.ticket {
		q.remove(name)
	}
}

// remove removes the ticket name; what rmdir refuses (a file, a
// directory with something in it) is not a ticket of ours: it stays, and
// is passed over from then on.
func (q *Queue) remove(name string) {
	if err := fsys.RemoveDir(filepath.Join(q.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.foreign = append(q.foreign, name)
	}
}

// Waiting is the releasing holder's look at the queue of the lock at
// path: whether a ticket other than its own (whose TOKEN is own, "" for
// none) is there, not counting dead waiters of this host. One listing of
// PATH/queue, made only by a holder that knows of waiters (see the rules
// above); a queue that cannot be listed has nobody in it.
func Waiting(path, own string) bool {
	names, err := fsys.ReadNames(filepath.Join(path, QueueDir))
	if err != nil {
		return false
	}
	for _, n := range names {
		if !IsTicket(n) || ticketDead(n) {
			continue
		}
		if f := strings.Split(n, "."); own != "" && f[1] == own {
			continue
		}
		return true
	}
	return false
}
