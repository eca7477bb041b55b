package dlock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
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
// A Semaphore value is one holder: Acquire on a Semaphore that holds a
// slot returns ErrHeld. It is safe for concurrent use. Semaphore
// satisfies Locker (Lock, TryLock, Unlock are Acquire, TryAcquire,
// Release).
type Semaphore struct {
	path  string
	n     int
	cfg   config
	slots []*Lock

	mu      sync.Mutex
	busy    bool
	held    int // the slot held, or -1
	checked bool

	testBlocked func()
}

// maxSlots bounds n: every attempt may look at every slot.
const maxSlots = 4096

// NewSemaphore returns a semaphore of size n at path. Options are those of
// New; they apply to each slot. NewSemaphore does no I/O.
func NewSemaphore(path string, n int, opts ...Option) (*Semaphore, error) {
	if n < 1 || n > maxSlots {
		return nil, fmt.Errorf("dlock: semaphore %s: size %d out of range 1..%d", path, n, maxSlots)
	}
	first, err := New(filepath.Join(path, "slot.0"), opts...)
	if err != nil {
		return nil, err
	}
	s := &Semaphore{path: filepath.Dir(first.path), n: n, cfg: first.cfg, held: -1}
	s.slots = append(s.slots, first)
	for i := 1; i < n; i++ {
		l, _ := New(filepath.Join(s.path, "slot."+strconv.Itoa(i)), opts...)
		s.slots = append(s.slots, l)
	}
	return s, nil
}

// Path returns the semaphore directory's absolute path.
func (s *Semaphore) Path() string { return s.path }

// Size returns n, the most holders the semaphore lets in at once.
func (s *Semaphore) Size() int { return s.n }

// Acquire takes one slot, waiting as Lock does: it returns nil when a slot
// is held, an error matching ErrBusy when PATIENCE ran out with all n
// slots held, ctx's error when ctx is done, and at once an error that
// waiting cannot fix.
func (s *Semaphore) Acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dlock: acquiring semaphore %s: %w", s.path, err)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	start := s.cfg.clock.Now()
	ok, seen, _, err := s.try(ctx)
	switch {
	case ok || err != nil:
		return err
	case s.cfg.patience == 0:
		return s.busyError(seen, start)
	}
	paths := []string{s.path}
	for _, l := range s.slots {
		paths = append(paths, l.path)
	}
	return wait(ctx, waitSpec{
		what: "acquiring semaphore " + s.path, paths: watchPaths(s.cfg, paths...), clock: s.cfg.clock,
		local:    !s.cfg.noWatch && isLocalFS(filepath.Dir(s.path)),
		patience: s.cfg.patience, poll: s.cfg.poll, busy: s.busyError,
		try:     func() (bool, entry, time.Time, error) { return s.try(ctx) },
		blocked: s.testBlocked,
	}, start)
}

// TryAcquire makes one attempt at every slot: (false, nil) when all n are
// held.
func (s *Semaphore) TryAcquire() (bool, error) {
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.end()
	ok, _, _, err := s.try(nil)
	return ok, err
}

// Release gives the slot back: ErrNotHeld if none is held, ErrLost if it
// was reclaimed or removed while held.
func (s *Semaphore) Release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held < 0 {
		return fmt.Errorf("dlock: releasing semaphore %s: %w", s.path, ErrNotHeld)
	}
	l := s.slots[s.held]
	s.held = -1
	return l.Unlock()
}

// Lost is closed if the held slot is reclaimed by another holder or
// removed. Call it after Acquire returns.
func (s *Semaphore) Lost() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held < 0 {
		return make(chan struct{})
	}
	return s.slots[s.held].Lost()
}

// Fence returns the fence of the held slot (0 if none). Fences rise with
// every acquisition of that slot, not of the semaphore as a whole.
func (s *Semaphore) Fence() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held < 0 {
		return 0
	}
	return s.slots[s.held].Fence()
}

// Slot returns the index of the held slot, or -1.
func (s *Semaphore) Slot() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Do acquires a slot, runs fn, and releases it, as Lock.Do does.
func (s *Semaphore) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return Do(ctx, s, fn)
}

// Lock is Acquire, so that a Semaphore is a Locker.
func (s *Semaphore) Lock(ctx context.Context) error { return s.Acquire(ctx) }

// TryLock is TryAcquire.
func (s *Semaphore) TryLock() (bool, error) { return s.TryAcquire() }

// Unlock is Release.
func (s *Semaphore) Unlock() error { return s.Release() }

func (s *Semaphore) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.held >= 0:
		return fmt.Errorf("dlock: acquiring semaphore %s: %w (slot %d; call Release first)", s.path, ErrHeld, s.held)
	case s.busy:
		return fmt.Errorf("dlock: acquiring semaphore %s: %w (another goroutine is acquiring it)", s.path, ErrHeld)
	}
	s.busy = true
	return nil
}

func (s *Semaphore) end() {
	s.mu.Lock()
	s.busy = false
	s.mu.Unlock()
}

// try attempts every slot once, starting at a random one so that holders
// spread over the slots. It returns the earliest time a seen holder goes
// stale. ctx, if not nil, can abandon an attempt stuck in the filesystem.
func (s *Semaphore) try(ctx context.Context) (bool, entry, time.Time, error) {
	if err := s.check(); err != nil {
		return false, entry{}, time.Time{}, err
	}
	var seen entry
	var staleAt time.Time
	start := rand.N(s.n)
	for k := range s.n {
		i := (start + k) % s.n
		ok, e, at, err := s.slots[i].tryOnce(ctx)
		if ok {
			s.mu.Lock()
			s.held = i
			s.mu.Unlock()
			return true, entry{}, time.Time{}, nil
		}
		if err != nil {
			return false, entry{}, time.Time{}, err
		}
		if staleAt.IsZero() || at.Before(staleAt) {
			seen, staleAt = e, at
		}
	}
	return false, seen, staleAt, nil
}

func (s *Semaphore) busyError(seen entry, start time.Time) error {
	now := s.cfg.clock.Now()
	e := &BusyError{Path: s.path, Holder: seen.holder, Waited: now.Sub(start)}
	if !seen.holder.Unknown {
		e.Age = now.Sub(seen.holder.Beat)
	}
	return fmt.Errorf("dlock: semaphore %s: all %d slots are held: %w", s.path, s.n, e)
}

// check makes sure the directory is a semaphore of size n, creating it
// (with its size, atomically) if it is missing. Once per Semaphore.
func (s *Semaphore) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checked {
		return nil
	}
	for range 3 {
		err := checkContainer(s.path, "size."+strconv.Itoa(s.n), &s.cfg, func(name string) bool {
			return strings.HasPrefix(name, "slot.") || strings.HasPrefix(name, ".slot.")
		})
		if err == nil {
			s.checked = true
			return nil
		}
		if !errors.Is(err, errRetry) {
			return err
		}
	}
	return fmt.Errorf("dlock: semaphore %s keeps changing under us", s.path)
}

var errRetry = errors.New("retry")

// checkContainer makes sure dir is a dlock container (a semaphore or a
// reader/writer lock) whose marker entry is marker, creating it with the
// marker if it is missing. Names for which member is true belong there;
// any other name means it is not ours: ErrNotLock.
func checkContainer(dir, marker string, cfg *config, member func(string) bool) error {
	names, err := readNames(dir)
	if errors.Is(err, fs.ErrNotExist) {
		perm := cfg.perm
		stage := stagePath(dir, "new", newToken()[:16])
		err := os.Mkdir(stage, perm)
		if err == nil {
			if err = os.Chmod(stage, perm); err == nil {
				err = os.Mkdir(filepath.Join(stage, marker), 0o755)
			}
			if err == nil {
				if err = renameExclusive(stage, dir); err == errNoExclusive {
					err = os.Rename(stage, dir)
				}
			}
			if err == nil {
				kind, _, _ := strings.Cut(marker, ".")
				sweepStages(dir, cfg.clock.Now(), cfg.timeout, func(n string) bool { return strings.HasPrefix(n, kind+".") })
				return nil
			}
			os.Remove(filepath.Join(stage, marker))
			os.Remove(stage)
			if errors.Is(err, fs.ErrNotExist) {
				return errRetry // our stage was swept while we paused (sweepStages)
			}
		}
		if fi, lerr := os.Lstat(dir); lerr == nil && fi.IsDir() {
			return errRetry // another process made it first
		}
		return fmt.Errorf("dlock: creating %s: %w", dir, err)
	}
	if err != nil {
		if fi, lerr := os.Lstat(dir); lerr == nil && !fi.IsDir() {
			return fmt.Errorf("dlock: %s is not a directory (a file or a symlink): %w", dir, ErrNotLock)
		}
		return fmt.Errorf("dlock: reading %s: %w", dir, err)
	}
	kind, _, _ := strings.Cut(marker, ".")
	found := ""
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, kind+"."):
			if found != "" {
				return fmt.Errorf("dlock: %s has two markers %s and %s: %w", dir, found, n, ErrCorrupt)
			}
			found = n
		case !member(n):
			return fmt.Errorf("dlock: %s holds %q, which is not ours: %w", dir, n, ErrNotLock)
		}
	}
	switch found {
	case marker:
		return nil
	case "":
		return fmt.Errorf("dlock: %s has no %s marker: %w", dir, kind, ErrNotLock)
	}
	return fmt.Errorf("dlock: %s is marked %s, not %s: opened with another size", dir, found, marker)
}

// tryOnce is one attempt at l, for a container that drives several locks:
// it reports when the seen holder goes stale. ctx, if not nil, can abandon
// an attempt stuck in the filesystem (see attemptIn).
func (l *Lock) tryOnce(ctx context.Context) (bool, entry, time.Time, error) {
	if err := l.begin(); err != nil {
		return false, entry{}, time.Time{}, err
	}
	defer l.end()
	o := l.attemptIn(ctx, byListing)
	return o.ok, o.seen, o.staleAt, o.err
}
