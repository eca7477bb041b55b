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

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
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
// One RWLock value serves many goroutines, as a sync.RWMutex does: each
// RLock (or RDo) holds a reader slot of its own, and RUnlock gives one
// back; a writer waits for the value's own readers as for anyone's, and
// for the value's own writer: like a sync.RWMutex, it is not reentrant (a
// goroutine that holds it and calls Lock waits for its context to end).
// The RWLock itself is a Locker for writing;
// RLocker gives one for reading. A zero RWLock is not usable: make one
// with NewRWLock.
type RWLock struct {
	path    string
	cfg     config
	writer  *Lock
	readers *Semaphore

	mu      sync.Mutex
	writing bool          // a write hold
	wturn   chan struct{} // full while one of this value's goroutines writes or is taking the write lock
	reads   []*Lease      // the read holds, latest last
	wslots  []*Lease      // the slots a writer holds or is taking
	lostCh  chan struct{}
	stop    chan struct{}

	checkMu sync.Mutex // the container check: I/O, so not under mu
	checked bool

	testBlocked func()
}

// NewRWLock returns a reader/writer lock at path. Options are those of New,
// plus WithMaxReaders. It does no I/O.
func NewRWLock(path string, opts ...Option) (*RWLock, error) {
	cfg, err := newConfig("reader/writer lock", path, opts, allowReaders)
	if err != nil {
		return nil, err
	}
	n := cfg.readers
	if n == 0 {
		n = DefaultMaxReaders
	}
	w, err := newLock(filepath.Join(path, "writer"), cfg)
	if err != nil {
		return nil, err
	}
	r, err := newSemaphore(filepath.Join(path, "readers"), n, cfg)
	if err != nil {
		return nil, err
	}
	return &RWLock{path: filepath.Dir(w.path), cfg: w.cfg, writer: w, readers: r, lostCh: make(chan struct{}), wturn: make(chan struct{}, 1)}, nil
}

// Path returns the lock's absolute path.
func (rw *RWLock) Path() string { return rw.path }

// RLock acquires the lock for reading, waiting as Lock does while a writer
// holds the lock or waits for it, or while all reader slots are taken.
// Goroutines may call RLock on one RWLock at once: each holds a reader
// slot of its own.
func (rw *RWLock) RLock(ctx context.Context) error {
	p, err := rw.rlock(ctx)
	if err == nil {
		rw.addRead(p.slot)
	}
	return err
}

// TryRLock makes one attempt to acquire the lock for reading.
func (rw *RWLock) TryRLock() (bool, error) {
	if err := rw.check(); err != nil {
		return false, err
	}
	o := rw.tryRead(nil)
	if !o.ok || o.err != nil {
		return false, o.err
	}
	rw.addRead(o.slot)
	return true, nil
}

// RUnlock releases a read hold (the latest, when several goroutines read
// through this value: readers are alike): ErrNotHeld if this RWLock holds
// none, ErrLost if the reader slot was lost while held.
func (rw *RWLock) RUnlock() error {
	rw.mu.Lock()
	n := len(rw.reads)
	if n == 0 {
		rw.mu.Unlock()
		return fmt.Errorf("dlock: read-unlocking %s: %w", rw.path, ErrNotHeld)
	}
	p := rw.reads[n-1]
	rw.reads = rw.reads[:n-1]
	rw.mu.Unlock()
	return p.Release()
}

// Lock acquires the lock for writing: it waits for the writer lock, then
// for every reader to leave.
func (rw *RWLock) Lock(ctx context.Context) error {
	if err := rw.check(); err != nil {
		return err
	}
	select {
	case rw.wturn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("dlock: write-locking %s: waiting for another writer of this RWLock: %w", rw.path, context.Cause(ctx))
	}
	err := rw.wlock(ctx)
	if err != nil {
		<-rw.wturn
	}
	return err
}

// TryLock makes one attempt to acquire the lock for writing: it fails if
// anyone reads or writes.
func (rw *RWLock) TryLock() (bool, error) {
	if err := rw.check(); err != nil {
		return false, err
	}
	select {
	case rw.wturn <- struct{}{}:
	default:
		return false, nil // another goroutine of this value writes
	}
	ok, err := rw.writer.TryLock()
	if ok && err == nil {
		o := rw.trySlots(nil)
		if ok, err = o.ok, o.err; !ok || err != nil {
			rw.abandon()
		}
	}
	ok = ok && err == nil
	if ok {
		rw.heldWrite()
	} else {
		<-rw.wturn
	}
	return ok, err
}

// Unlock releases a write hold: ErrNotHeld if this RWLock does not hold
// one, ErrLost if any part of it was lost while held.
func (rw *RWLock) Unlock() error {
	rw.mu.Lock()
	if !rw.writing {
		rw.mu.Unlock()
		return fmt.Errorf("dlock: write-unlocking %s: %w", rw.path, ErrNotHeld)
	}
	rw.writing = false
	close(rw.stop)
	slots := rw.wslots
	rw.wslots = nil
	rw.mu.Unlock()
	// Every part is released; the writer lock's error (usually the same
	// loss as the slots') speaks for them, or else the first slot's.
	var first error
	lost := 0
	for i := len(slots) - 1; i >= 0; i-- {
		if err := slots[i].Release(); err != nil {
			lost++
			first = err
		}
	}
	err := rw.writer.Unlock()
	<-rw.wturn
	switch {
	case err != nil:
		return err
	case first != nil:
		return fmt.Errorf("%w (and %d reader slots in all)", first, lost)
	}
	return nil
}

// Lost is closed if the write hold, or else the latest read hold, was
// lost: reclaimed by another process or removed. Call it after the
// acquisition returns. (RDo gives each function the loss of its own.)
func (rw *RWLock) Lost() <-chan struct{} {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if !rw.writing && len(rw.reads) > 0 {
		return rw.reads[len(rw.reads)-1].Lost()
	}
	return rw.lostCh
}

// Fence returns, for a write hold, the writer lock's fence, which rises
// with every write acquisition; for a read hold, the fence of the latest
// reader slot held.
func (rw *RWLock) Fence() uint64 {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if !rw.writing && len(rw.reads) > 0 {
		return rw.reads[len(rw.reads)-1].Fence()
	}
	return rw.writer.Fence()
}

// Do acquires the lock for writing, runs fn and releases it.
func (rw *RWLock) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return Do(ctx, rw, fn)
}

// RDo acquires the lock for reading with a reader slot of its own, runs
// fn and releases that slot. Goroutines may call RDo on one RWLock at once.
func (rw *RWLock) RDo(ctx context.Context, fn func(ctx context.Context) error) error {
	p, err := rw.rlock(ctx)
	if err != nil {
		return err
	}
	return runHeld(ctx, p.Lost(), fn, p.Release)
}

// RLocker returns a Locker whose Lock and Unlock are RLock and RUnlock.
func (rw *RWLock) RLocker() Locker { return rlocker{rw} }

type rlocker struct{ rw *RWLock }

func (r rlocker) Lock(ctx context.Context) error { return r.rw.RLock(ctx) }
func (r rlocker) TryLock() (bool, error)         { return r.rw.TryRLock() }
func (r rlocker) Unlock() error                  { return r.rw.RUnlock() }
func (r rlocker) Lost() <-chan struct{}          { return r.rw.Lost() }
func (r rlocker) Fence() uint64                  { return r.rw.Fence() }

// check makes sure PATH is a reader/writer lock (creating it if missing),
// once per RWLock.
func (rw *RWLock) check() error {
	if rw.writer == nil {
		return errZero("RWLock", "NewRWLock")
	}
	rw.checkMu.Lock()
	defer rw.checkMu.Unlock()
	if rw.checked {
		return nil
	}
	if err := fsys.Unsafe(rw.path); err != nil {
		return err
	}
	err := lockdir.ErrRetry
	for i := 0; !rw.checked && errors.Is(err, lockdir.ErrRetry) && i < 3; i++ {
		err = lockdir.Container(rw.path, "reader/writer lock", "rwlock."+strconv.Itoa(rw.readers.n), rw.cfg.perm, rw.cfg.clock.Now(), rw.cfg.timeout, func(n string) bool {
			return n == "writer" || n == "readers" || strings.HasPrefix(n, ".writer.") || strings.HasPrefix(n, ".readers.")
		})
		rw.checked = err == nil
	}
	if !rw.checked {
		return err
	}
	return nil
}

// rlock takes a reader slot, waiting: the read hold's lease.
func (rw *RWLock) rlock(ctx context.Context) (*Lease, error) {
	if err := rw.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dlock: read-locking %s: %w", rw.path, err)
	}
	start := rw.cfg.clock.Now()
	actx, cancel := rw.cfg.attemptContext(ctx, start)
	defer cancel()
	o := rw.tryRead(actx)
	if o.settled(rw.cfg.patience) {
		return rw.readers.leaseOf(o), rw.cfg.patienceSpent(ctx, rw.path, o.err)
	}
	slot := -1
	err := waitBusy(ctx, rw.cfg, rw.path, o, start, func() waitSpec {
		w := rw.spec("read-locking "+rw.path, append([]string{rw.writer.path}, slotPaths(rw.readers)...), rw.cfg.patience)
		w.try = func() outcome {
			o := rw.tryRead(actx)
			if o.ok {
				slot = o.slot
			}
			return o
		}
		return w
	})
	if err != nil {
		return nil, err
	}
	return rw.readers.lease(slot), nil
}

// addRead records a read hold of slot for RUnlock, Lost and Fence. (RDo's
// holds are its own: an RUnlock of another goroutine must never release
// one.)
func (rw *RWLock) addRead(slot int) {
	p := rw.readers.lease(slot)
	rw.mu.Lock()
	rw.reads = append(rw.reads, p)
	rw.mu.Unlock()
}

// wlock takes the writer lock, then every reader slot, all within one
// PATIENCE.
func (rw *RWLock) wlock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dlock: write-locking %s: %w", rw.path, err)
	}
	start := rw.cfg.clock.Now()
	actx, cancel := rw.cfg.attemptContext(ctx, start)
	defer cancel()
	if err := rw.writer.Lock(ctx); err != nil {
		return err
	}
	patience := rw.cfg.patience
	if patience > 0 {
		patience = max(rw.cfg.patience-rw.cfg.clock.Since(start), 0)
	}
	o := rw.trySlots(actx)
	err := rw.cfg.patienceSpent(ctx, rw.path, o.err)
	if !o.ok && o.err == nil {
		err = waitBusy(ctx, rw.cfg, rw.path, o, rw.cfg.clock.Now(), func() waitSpec {
			w := rw.spec("write-locking "+rw.path+" (waiting for readers)", slotPaths(rw.readers), patience)
			w.try = func() outcome { return rw.trySlots(actx) }
			return w
		})
	}
	if err != nil {
		rw.abandon()
		return err
	}
	rw.heldWrite()
	return nil
}

// spec is what waiting for this RWLock needs, watching paths.
func (rw *RWLock) spec(what string, paths []string, patience time.Duration) waitSpec {
	return waitSpec{
		what: what, paths: watchPaths(rw.cfg, paths...), patience: patience,
		clock: rw.cfg.clock, poll: rw.cfg.poll, blocked: rw.testBlocked,
		local: !rw.cfg.noWatch && fsys.IsLocal(filepath.Dir(rw.path)),
		busy: func(seen entry, start time.Time) error {
			return fmt.Errorf("dlock: %s: %w", rw.path, rw.writer.busyError(seen, start))
		},
	}
}

// tryRead takes a reader slot unless a writer holds or waits for the
// writer lock: the slot taken, or -1. Looking at the writer lock first
// only keeps writers from starving; safety comes from the slots, which a
// writer takes all of.
func (rw *RWLock) tryRead(ctx context.Context) outcome {
	st, err := readState(rw.writer.path)
	if err != nil {
		return outcome{err: err}
	}
	if !st.Missing && st.Entries == 1 && !st.e.free {
		rw.writer.op.Lock()
		now := rw.cfg.clock.Now()
		at, _ := rw.writer.staleAt(now, now, st.e)
		rw.writer.op.Unlock()
		if now.Before(at) {
			return outcome{seen: st.e, staleAt: at}
		}
	}
	return rw.readers.try(ctx)
}

// trySlots takes the reader slots in order, keeping those it has: a writer
// gains slots as readers leave and never gives one back to a new reader. A
// slot held by a reader of this value is waited for like anyone's.
func (rw *RWLock) trySlots(ctx context.Context) outcome {
	if err := rw.readers.check(); err != nil {
		return outcome{err: err}
	}
	for i := range rw.readers.slots {
		rw.mu.Lock()
		have := len(rw.wslots) > i
		rw.mu.Unlock()
		if have {
			continue
		}
		if !rw.readers.reserve(i) {
			return outcome{} // a reader of this value: its release wakes us
		}
		o := rw.readers.slots[i].tryOnce(ctx)
		if errors.Is(o.err, ErrHeld) {
			o.err = nil // released by a reader of this value a moment ago: its rename wakes us
		}
		if !o.ok || o.err != nil {
			rw.readers.unreserve(i)
			return o
		}
		rw.mu.Lock()
		rw.wslots = append(rw.wslots, rw.readers.lease(i))
		rw.mu.Unlock()
	}
	return outcome{ok: true}
}

// abandon releases whatever a failed write acquisition took.
func (rw *RWLock) abandon() {
	rw.mu.Lock()
	slots := rw.wslots
	rw.wslots = nil
	rw.mu.Unlock()
	for _, p := range slots {
		p.Release()
	}
	rw.writer.Unlock()
}

// heldWrite records a write hold and merges the Lost channels of every
// lock it holds into one.
func (rw *RWLock) heldWrite() {
	parts := []<-chan struct{}{rw.writer.Lost()}
	rw.mu.Lock()
	for _, p := range rw.wslots {
		parts = append(parts, p.Lost())
	}
	rw.writing = true
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

func slotPaths(s *Semaphore) []string {
	var p []string
	for _, l := range s.slots {
		p = append(p, l.path)
	}
	return p
}
