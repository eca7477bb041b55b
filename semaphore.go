package dlock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
)

// Semaphore lets at most n holders in at once, across processes and
// hosts. It is a directory of n slots, each a lock directory with every
// guarantee of Lock: a holder holds exactly one slot, so two holders can
// never share one, and a dead holder's slot is reclaimed after TIMEOUT (at
// once on the same host). The size is recorded when the directory is
// created; opening it with another n is an error.
//
//	PATH/size.N      the semaphore's size
//	PATH/slot.K/     K = 0..N-1: a lock directory, made on first use
//
// One Semaphore value serves many goroutines: each Take (or Do) holds a
// slot of its own, as a Lease that it releases, and waits while all n are
// held, by this process or others. Acquire and Release (and the Locker
// methods Lock, TryLock, Unlock) are the same for one holder per value,
// like a Lock: Acquire while the value holds a slot through Acquire
// returns ErrHeld. A zero Semaphore is not usable: make one with
// NewSemaphore.
type Semaphore struct {
	path  string
	n     int
	cfg   config
	slots []*Lock

	mu       sync.Mutex
	busy     bool   // an Acquire is under way
	acquired *Lease // the slot Acquire took
	reserved []bool // slots this value holds or is trying: its own holders skip them

	box container

	testBlocked func()
}

// maxSlots bounds n: every attempt may look at every slot.
const maxSlots = 4096

// NewSemaphore returns a semaphore of size n at path. Options are those of
// New; they apply to each slot. It reads the directory at path, if there
// is one, only to refuse a semaphore of another size: every user of a
// semaphore must open it with the same n.
func NewSemaphore(path string, n int, opts ...Option) (*Semaphore, error) {
	cfg, err := newConfig("semaphore", path, opts, 0)
	if err != nil {
		return nil, err
	}
	s, err := newSemaphore(path, n, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkMarker(s.path, "semaphore", "size", n); err != nil {
		return nil, err
	}
	return s, nil
}

func newSemaphore(path string, n int, cfg config) (*Semaphore, error) {
	if n < 1 || n > maxSlots {
		return nil, fmt.Errorf("dlock: semaphore %s: size %d out of range 1..%d", path, n, maxSlots)
	}
	first, err := newLock(filepath.Join(path, "slot.0"), cfg)
	if err != nil {
		return nil, err
	}
	s := &Semaphore{path: filepath.Dir(first.path), n: n, cfg: first.cfg, reserved: make([]bool, n)}
	s.slots = append(s.slots, first)
	for i := 1; i < n; i++ {
		l, _ := newLock(filepath.Join(s.path, "slot."+strconv.Itoa(i)), cfg)
		s.slots = append(s.slots, l)
	}
	return s, nil
}

// Path returns the semaphore directory's absolute path.
func (s *Semaphore) Path() string { return s.path }

// Size returns n, the most holders the semaphore lets in at once.
func (s *Semaphore) Size() int { return s.n }

// Take takes one slot, waiting as Lock does: it returns the Lease once a
// slot is held, an error matching ErrBusy when PATIENCE ran out with all n
// slots held, ctx's error when ctx is done, and at once an error that
// waiting cannot fix. Goroutines may call Take on one Semaphore at once:
// each gets a slot of its own.
func (s *Semaphore) Take(ctx context.Context) (*Lease, error) {
	if s.slots == nil {
		return nil, errZero("Semaphore", "NewSemaphore")
	}
	o, err := acquire(ctx, s, acquisition{"acquiring semaphore", s.path, &s.cfg, s.cfg.clock.Now()})
	return s.leaseOf(o), err
}

// waitSpec is what waiting for a slot watches: the semaphore directory
// and every slot.
func (s *Semaphore) waitSpec() waitSpec {
	paths := []string{s.path}
	for _, l := range s.slots {
		paths = append(paths, l.path)
	}
	return waitSpec{
		what: "acquiring semaphore " + s.path, paths: watchPaths(s.cfg, paths...), clock: s.cfg.clock,
		local:    !s.cfg.noWatch && fsys.IsLocal(filepath.Dir(s.path)),
		patience: s.cfg.patience, poll: s.cfg.poll, blocked: s.testBlocked,
	}
}

// TryTake makes one attempt at every slot: (nil, nil) when all n are held.
func (s *Semaphore) TryTake() (*Lease, error) {
	if s.slots == nil {
		return nil, errZero("Semaphore", "NewSemaphore")
	}
	o := tryNow(s)
	return s.leaseOf(o), o.err
}

// leaseOf is the lease an attempt took: nil unless it acquired.
func (s *Semaphore) leaseOf(o outcome) *Lease {
	if !o.ok {
		return nil
	}
	return s.lease(o.slot)
}

func (s *Semaphore) lease(slot int) *Lease {
	if slot < 0 {
		return nil
	}
	l := s.slots[slot]
	return &Lease{s: s, slot: slot, fence: l.Fence(), lost: l.Lost()}
}

// Acquire takes one slot for this value's one holder, as Take does: it
// returns nil when a slot is held, and ErrHeld if this value already holds
// one through Acquire (call Release first).
func (s *Semaphore) Acquire(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return err
	}
	p, err := s.Take(ctx)
	s.end(p)
	return err
}

// TryAcquire makes one attempt at every slot for this value's one holder:
// (false, nil) when all n are held.
func (s *Semaphore) TryAcquire() (bool, error) {
	if err := s.begin(); err != nil {
		return false, err
	}
	p, err := s.TryTake()
	s.end(p)
	return p != nil, err
}

// Release gives back the slot Acquire took: ErrNotHeld if none is held,
// ErrLost if it was reclaimed or removed while held.
func (s *Semaphore) Release() error {
	s.mu.Lock()
	p := s.acquired
	s.acquired = nil
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("dlock: releasing semaphore %s: %w", s.path, ErrNotHeld)
	}
	return p.Release()
}

// Lost is closed if the slot Acquire took is reclaimed by another holder
// or removed. Call it after Acquire returns.
func (s *Semaphore) Lost() <-chan struct{} {
	if p := s.current(); p != nil {
		return p.Lost()
	}
	return make(chan struct{})
}

// Fence returns the fence of the slot Acquire took (0 if none). Fences
// rise with every acquisition of that slot, not of the semaphore as a
// whole.
func (s *Semaphore) Fence() uint64 {
	if p := s.current(); p != nil {
		return p.Fence()
	}
	return 0
}

// Slot returns the index of the slot Acquire took, or -1.
func (s *Semaphore) Slot() int {
	if p := s.current(); p != nil {
		return p.Slot()
	}
	return -1
}

// current is the lease Acquire took, nil if none.
func (s *Semaphore) current() *Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acquired
}

// Do takes a slot of its own (Take), runs fn, and releases the slot, as
// Lock.Do does. Goroutines may call Do on one Semaphore at once.
func (s *Semaphore) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	p, err := s.Take(ctx)
	if err != nil {
		return err
	}
	return runHeld(ctx, p.Lost(), fn, p.Release)
}

// doOwn is Do: a slot of the call's own, whatever Acquire holds (see the
// package's Do).
func (s *Semaphore) doOwn(ctx context.Context, fn func(ctx context.Context) error) error {
	return s.Do(ctx, fn)
}

// Lock is Acquire, so that a Semaphore is a Locker.
func (s *Semaphore) Lock(ctx context.Context) error { return s.Acquire(ctx) }

// TryLock is TryAcquire.
func (s *Semaphore) TryLock() (bool, error) { return s.TryAcquire() }

// Unlock is Release.
func (s *Semaphore) Unlock() error { return s.Release() }

func (s *Semaphore) begin() error {
	if s.slots == nil {
		return errZero("Semaphore", "NewSemaphore")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.acquired != nil:
		return fmt.Errorf("dlock: acquiring semaphore %s: %w (slot %d; call Release first)", s.path, ErrHeld, s.acquired.slot)
	case s.busy:
		return fmt.Errorf("dlock: acquiring semaphore %s: %w (another goroutine is acquiring it with Acquire; use Take for many holders)", s.path, ErrHeld)
	}
	s.busy = true
	return nil
}

// end ends an Acquire that got p (nil if none).
func (s *Semaphore) end(p *Lease) {
	s.mu.Lock()
	s.busy, s.acquired = false, p
	s.mu.Unlock()
}

// reserve marks slot i as this value's (held or being tried), unless it
// is already: other holders of this value then skip it.
func (s *Semaphore) reserve(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved[i] {
		return false
	}
	s.reserved[i] = true
	return true
}

func (s *Semaphore) unreserve(i int) {
	s.mu.Lock()
	s.reserved[i] = false
	s.mu.Unlock()
}

// try attempts every slot this value does not hold once, starting at a
// random one so that holders spread over the slots: the slot taken, or -1
// and the earliest time a seen holder goes stale. A ctx that can end can
// abandon an attempt stuck in the filesystem.
func (s *Semaphore) try(ctx context.Context) outcome {
	if err := s.check(); err != nil {
		return outcome{err: err}
	}
	var busy outcome
	start := rand.N(s.n)
	for k := range s.n {
		i := (start + k) % s.n
		if !s.reserve(i) {
			continue // held by another holder of this value: a release there wakes us
		}
		o := s.slots[i].tryOnce(ctx)
		if o.ok {
			return outcome{ok: true, slot: i}
		}
		s.unreserve(i)
		if errors.Is(o.err, ErrHeld) {
			continue // released by this value a moment ago: its rename wakes us
		}
		if o.err != nil {
			return outcome{err: o.err}
		}
		if busy.staleAt.IsZero() || o.staleAt.Before(busy.staleAt) {
			busy.seen, busy.staleAt = o.seen, o.staleAt
		}
	}
	return busy
}

func (s *Semaphore) busyError(seen entry, start time.Time) error {
	return fmt.Errorf("dlock: semaphore %s: all %d slots are held: %w", s.path, s.n, busyError(s.cfg.clock, s.path, seen, start))
}

// check makes sure the directory is a semaphore of size n, creating it
// (with its size, atomically) if it is missing. Once per Semaphore.
func (s *Semaphore) check() error {
	return s.box.open(s.path, "semaphore", "size", s.n, s.cfg, func(name string) bool {
		return strings.HasPrefix(name, "slot.") || strings.HasPrefix(name, ".slot.")
	}, s.slots...)
}

// A Lease is one holding of one slot of a Semaphore, got from Take or
// TryTake. Many goroutines can each hold a lease of one Semaphore.
type Lease struct {
	s        *Semaphore
	slot     int
	fence    uint64
	lost     <-chan struct{} // this acquisition's: the slot may pass to another later
	released bool            // guarded by s.mu
}

// Release gives the lease's slot back: ErrNotHeld if it was released
// already, ErrLost if it was lost while held (reclaimed by another holder,
// or removed, or its deadline passed).
func (p *Lease) Release() error {
	s := p.s
	s.mu.Lock()
	done := p.released
	p.released = true
	if !done {
		// Free for this value's other holders now: one that tries the
		// slot before its Unlock below finds it held and skips it, then
		// the release's rename wakes it.
		s.reserved[p.slot] = false
	}
	s.mu.Unlock()
	if done {
		return fmt.Errorf("dlock: releasing slot %d of semaphore %s: %w", p.slot, s.path, ErrNotHeld)
	}
	return s.slots[p.slot].Unlock()
}

// Lost is closed if the lease's slot is lost while held (see Lock.Lost).
func (p *Lease) Lost() <-chan struct{} { return p.lost }

// Fence returns the fence of the lease's acquisition of its slot. Fences
// rise with every acquisition of that slot, not of the semaphore as a
// whole.
func (p *Lease) Fence() uint64 { return p.fence }

// Slot returns the index of the lease's slot.
func (p *Lease) Slot() int { return p.slot }
