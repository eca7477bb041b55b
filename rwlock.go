package dlock

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxReaders is how many readers an RWLock lets in at once unless
// WithMaxReaders says otherwise.
const DefaultMaxReaders = 32

// WithMaxReaders sets how many readers an RWLock lets in at once (default
// 32). A writer takes a lock per reader slot, so larger values make
// writing dearer. Every user of one RWLock must pass the same value.
func WithMaxReaders(n int) Option { return func(c *config) { c.readers = n } }

// RWLock is a reader/writer lock across processes and hosts: many readers
// or one writer. It is built only from Locks, whose compare-and-swap
// renames make it safe on network filesystems too:
//
//	PATH/rwlock.N    marker: N reader slots
//	PATH/writer/     a Lock: the writer, and writers waiting their turn
//	PATH/readers/    a Semaphore of N slots
//
// A reader holds one slot of the semaphore. A writer holds the writer lock
// and then every slot, taken in order, so a writer excludes every reader
// and every other writer by the locks themselves. While a writer holds or
// waits on the writer lock, new readers wait, so a stream of readers
// cannot starve a writer. Dead readers and writers are reclaimed like any
// Lock: after TIMEOUT, at once on the same host.
//
// An RWLock value is one holder, reading or writing; it is safe for
// concurrent use. The RWLock itself is a Locker for writing; RLocker gives
// one for reading.
type RWLock struct {
	path    string
	cfg     config
	writer  *Lock
	readers *Semaphore

	mu      sync.Mutex
	mode    int // 0 none, modeRead, modeWrite
	busy    bool
	checked bool
	lostCh  chan struct{}
	stop    chan struct{}

	testBlocked func()
}

const (
	modeRead = 1 + iota
	modeWrite
)

// NewRWLock returns a reader/writer lock at path. Options are those of New,
// plus WithMaxReaders. It does no I/O.
func NewRWLock(path string, opts ...Option) (*RWLock, error) {
	w, err := New(filepath.Join(path, "writer"), opts...)
	if err != nil {
		return nil, err
	}
	n := w.cfg.readers
	if n == 0 {
		n = DefaultMaxReaders
	}
	r, err := NewSemaphore(filepath.Join(path, "readers"), n, opts...)
	if err != nil {
		return nil, err
	}
	return &RWLock{path: filepath.Dir(w.path), cfg: w.cfg, writer: w, readers: r, lostCh: make(chan struct{})}, nil
}

// Path returns the lock's absolute path.
func (rw *RWLock) Path() string { return rw.path }

// RLock acquires the lock for reading, waiting as Lock does while a writer
// holds the lock or waits for it, or while all reader slots are taken.
func (rw *RWLock) RLock(ctx context.Context) error {
	return rw.acquire(ctx, modeRead)
}

// TryRLock makes one attempt to acquire the lock for reading.
func (rw *RWLock) TryRLock() (bool, error) { return rw.tryAcquire(modeRead) }

// RUnlock releases a read hold: ErrNotHeld if this RWLock does not hold
// one, ErrLost if the reader slot was lost while held.
func (rw *RWLock) RUnlock() error { return rw.release(modeRead) }

// Lock acquires the lock for writing: it waits for the writer lock, then
// for every reader to leave.
func (rw *RWLock) Lock(ctx context.Context) error { return rw.acquire(ctx, modeWrite) }

// TryLock makes one attempt to acquire the lock for writing: it fails if
// anyone reads or writes.
func (rw *RWLock) TryLock() (bool, error) { return rw.tryAcquire(modeWrite) }

// Unlock releases a write hold: ErrNotHeld if this RWLock does not hold
// one, ErrLost if any part of it was lost while held.
func (rw *RWLock) Unlock() error { return rw.release(modeWrite) }

// Lost is closed if the current hold (read or write) was lost: reclaimed by
// another process or removed. Call it after the acquisition returns.
func (rw *RWLock) Lost() <-chan struct{} {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.lostCh
}

// Fence returns, for a write hold, the writer lock's fence, which rises
// with every write acquisition; for a read hold, the fence of the reader
// slot held.
func (rw *RWLock) Fence() uint64 {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.mode == modeRead {
		return rw.readers.Fence()
	}
	return rw.writer.Fence()
}

// Do acquires the lock for writing, runs fn and releases it.
func (rw *RWLock) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return Do(ctx, rw, fn)
}

// RDo acquires the lock for reading, runs fn and releases it.
func (rw *RWLock) RDo(ctx context.Context, fn func(ctx context.Context) error) error {
	return Do(ctx, rw.RLocker(), fn)
}

// RLocker returns a Locker whose Lock and Unlock are RLock and RUnlock.
func (rw *RWLock) RLocker() Locker { return rlocker{rw} }

type rlocker struct{ rw *RWLock }

func (r rlocker) Lock(ctx context.Context) error { return r.rw.RLock(ctx) }
func (r rlocker) TryLock() (bool, error)         { return r.rw.TryRLock() }
func (r rlocker) Unlock() error                  { return r.rw.RUnlock() }
func (r rlocker) Lost() <-chan struct{}          { return r.rw.Lost() }
func (r rlocker) Fence() uint64                  { return r.rw.Fence() }

func (rw *RWLock) begin() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	switch {
	case rw.mode != 0:
		return fmt.Errorf("dlock: locking %s: %w (call Unlock or RUnlock first)", rw.path, ErrHeld)
	case rw.busy:
		return fmt.Errorf("dlock: locking %s: %w (another goroutine is acquiring it)", rw.path, ErrHeld)
	}
	err := errRetry
	for i := 0; !rw.checked && errors.Is(err, errRetry) && i < 3; i++ {
		err = checkContainer(rw.path, "rwlock."+strconv.Itoa(rw.readers.n), &rw.cfg, func(n string) bool {
			return n == "writer" || n == "readers" || strings.HasPrefix(n, ".writer.") || strings.HasPrefix(n, ".readers.")
		})
		rw.checked = err == nil
	}
	if !rw.checked {
		return err
	}
	rw.busy = true
	return nil
}

func (rw *RWLock) end() {
	rw.mu.Lock()
	rw.busy = false
	rw.mu.Unlock()
}

func (rw *RWLock) tryAcquire(mode int) (bool, error) {
	if err := rw.begin(); err != nil {
		return false, err
	}
	defer rw.end()
	var ok bool
	var err error
	if mode == modeRead {
		ok, _, _, err = rw.tryRead(nil)
	} else if ok, err = rw.writer.TryLock(); ok && err == nil {
		if ok, _, _, err = rw.trySlots(nil); !ok || err != nil {
			rw.abandon()
		}
	}
	if ok && err == nil {
		rw.held(mode)
	}
	return ok, err
}

func (rw *RWLock) acquire(ctx context.Context, mode int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dlock: locking %s: %w", rw.path, err)
	}
	if err := rw.begin(); err != nil {
		return err
	}
	defer rw.end()
	start := rw.cfg.clock.Now()
	spec := waitSpec{
		clock: rw.cfg.clock, poll: rw.cfg.poll, blocked: rw.testBlocked,
		local: !rw.cfg.noWatch && isLocalFS(filepath.Dir(rw.path)),
		busy: func(seen entry, start time.Time) error {
			return fmt.Errorf("dlock: %s: %w", rw.path, rw.writer.busyError(seen, start))
		},
	}
	if mode == modeRead {
		spec.what = "read-locking " + rw.path
		spec.try = func() (bool, entry, time.Time, error) { return rw.tryRead(ctx) }
		spec.paths = watchPaths(rw.cfg, append([]string{rw.writer.path}, slotPaths(rw.readers)...)...)
		spec.patience = rw.cfg.patience
		if err := rw.waitOrOnce(ctx, spec, start); err != nil {
			return err
		}
	} else {
		// The writer lock first, then every reader slot, all within one
		// PATIENCE.
		if err := rw.writer.Lock(ctx); err != nil {
			return err
		}
		spec.what = "write-locking " + rw.path + " (waiting for readers)"
		spec.try = func() (bool, entry, time.Time, error) { return rw.trySlots(ctx) }
		spec.paths = watchPaths(rw.cfg, slotPaths(rw.readers)...)
		spec.patience = rw.cfg.patience
		if spec.patience > 0 {
			spec.patience = max(rw.cfg.patience-rw.cfg.clock.Since(start), 0)
		}
		if err := rw.waitOrOnce(ctx, spec, rw.cfg.clock.Now()); err != nil {
			rw.abandon()
			return err
		}
	}
	rw.held(mode)
	return nil
}

func (rw *RWLock) waitOrOnce(ctx context.Context, spec waitSpec, start time.Time) error {
	ok, seen, _, err := spec.try()
	switch {
	case ok || err != nil:
		return err
	case spec.patience == 0:
		return spec.busy(seen, start)
	}
	return wait(ctx, spec, start)
}

// tryRead takes a reader slot unless a writer holds or waits for the
// writer lock. Looking at the writer lock first only keeps writers from
// starving; safety comes from the slots, which a writer takes all of.
func (rw *RWLock) tryRead(ctx context.Context) (bool, entry, time.Time, error) {
	st, err := readState(rw.writer.path)
	if err == nil {
		err = st.check(rw.writer.path)
	}
	if err != nil {
		return false, entry{}, time.Time{}, err
	}
	if !st.missing && st.entries == 1 && !st.e.free {
		rw.writer.op.Lock()
		now := rw.cfg.clock.Now()
		at, _ := rw.writer.staleAt(now, now, st.e)
		rw.writer.op.Unlock()
		if now.Before(at) {
			return false, st.e, at, nil
		}
	}
	return rw.readers.tryHeld(ctx)
}

// tryHeld is Semaphore.try for a container that does its own bookkeeping.
func (s *Semaphore) tryHeld(ctx context.Context) (bool, entry, time.Time, error) {
	if err := s.begin(); err != nil {
		return false, entry{}, time.Time{}, err
	}
	defer s.end()
	return s.try(ctx)
}

// trySlots takes the reader slots in order, keeping those it has: a writer
// gains slots as readers leave and never gives one back to a new reader.
func (rw *RWLock) trySlots(ctx context.Context) (bool, entry, time.Time, error) {
	if err := rw.readers.check(); err != nil {
		return false, entry{}, time.Time{}, err
	}
	for _, l := range rw.readers.slots {
		if l.isHeld() {
			continue
		}
		ok, seen, at, err := l.tryOnce(ctx)
		if !ok || err != nil {
			return false, seen, at, err
		}
	}
	return true, entry{}, time.Time{}, nil
}

// abandon releases whatever a failed write acquisition took.
func (rw *RWLock) abandon() {
	for _, l := range rw.readers.slots {
		if l.isHeld() {
			l.Unlock()
		}
	}
	rw.writer.Unlock()
}

// held records a successful acquisition and merges the Lost channels of
// every lock it holds into one.
func (rw *RWLock) held(mode int) {
	var parts []<-chan struct{}
	if mode == modeRead {
		parts = append(parts, rw.readers.Lost())
	} else {
		parts = append(parts, rw.writer.Lost())
		for _, l := range rw.readers.slots {
			parts = append(parts, l.Lost())
		}
	}
	rw.mu.Lock()
	rw.mode = mode
	rw.lostCh, rw.stop = make(chan struct{}), make(chan struct{})
	lost, stop := rw.lostCh, rw.stop
	rw.mu.Unlock()
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stop)}}
	for _, c := range parts {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
	}
	go func() {
		if i, _, _ := reflect.Select(cases); i > 0 {
			close(lost)
		}
	}()
}

func (rw *RWLock) release(mode int) error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.mode != mode {
		what := map[int]string{modeRead: "read", modeWrite: "write"}[mode]
		return fmt.Errorf("dlock: %s-unlocking %s: %w", what, rw.path, ErrNotHeld)
	}
	rw.mode = 0
	close(rw.stop)
	if mode == modeRead {
		return rw.readers.Release()
	}
	// Every part is released; the writer lock's error (usually the same
	// loss as the slots') speaks for them, or else the first slot's.
	var first error
	lost := 0
	for i := len(rw.readers.slots) - 1; i >= 0; i-- {
		if err := rw.readers.slots[i].Unlock(); err != nil {
			lost++
			first = err
		}
	}
	if err := rw.writer.Unlock(); err != nil {
		return err
	}
	if first != nil {
		return fmt.Errorf("%w (and %d reader slots in all)", first, lost)
	}
	return nil
}

func slotPaths(s *Semaphore) []string {
	var p []string
	for _, l := range s.slots {
		p = append(p, l.path)
	}
	return p
}

// isHeld reports whether l holds its lock.
func (l *Lock) isHeld() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}
