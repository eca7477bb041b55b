package dlock

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
)

// DefaultMaxReaders is how many readers an RWLock lets in at once unless
// WithMaxReaders says otherwise.
const DefaultMaxReaders = 32

// RWLock is a reader/writer lock across processes and hosts: many readers
// or one writer. It is built only from Locks, whose compare-and-swap
// renames make it safe on network filesystems too:
//
//	PATH/rwlock.N    marker: N reader slots
//	PATH/writer/     a Lock: the writer, and writers waiting their turn
//	PATH/readers/    a Semaphore of N slots
//
// A reader holds one slot of the semaphore. A writer holds the writer lock
// and then every slot (attempted all at once, each kept once taken), so a
// writer excludes every reader and every other writer by the locks
// themselves. While a writer holds or
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
	wfresh  bool          // the writer's next slot attempt is its first (see trySlots)
	lostCh  chan struct{}
	stop    chan struct{}

	box container

	testBlocked func()
}

// NewRWLock returns a reader/writer lock at path. Options are those of New,
// plus WithMaxReaders. It reads the directory at path, if there is one,
// only to refuse one made with another WithMaxReaders.
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
	if err := checkMarker(filepath.Dir(w.path), "reader/writer lock", "rwlock", n); err != nil {
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
	o := tryNow(reading{rw})
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
		rw.freshAttempt()
		o := rw.trySlots(context.Background())
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
	// Every part is released, the slots before the writer lock (a
	// reader waits while the writer lock is held); the writer lock's
	// error (usually the same loss as the slots') speaks for them, or
	// else the first slot's.
	first, lost := releaseSlots(slots)
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

// doOwn is RDo: a reader slot of the call's own (see the package's Do).
func (r rlocker) doOwn(ctx context.Context, fn func(ctx context.Context) error) error {
	return r.rw.RDo(ctx, fn)
}

// check makes sure PATH is a reader/writer lock (creating it if missing),
// once per RWLock.
func (rw *RWLock) check() error {
	if rw.writer == nil {
		return errZero("RWLock", "NewRWLock")
	}
	return rw.box.open(rw.path, "reader/writer lock", "rwlock", rw.readers.n, rw.cfg, func(n string) bool {
		return n == "writer" || n == "readers" || strings.HasPrefix(n, ".writer.") || strings.HasPrefix(n, ".readers.")
	}, rw.writer)
}

// rlock takes a reader slot, waiting: the read hold's lease.
func (rw *RWLock) rlock(ctx context.Context) (*Lease, error) {
	if err := rw.check(); err != nil {
		return nil, err
	}
	o, err := acquire(ctx, reading{rw}, acquisition{"read-locking", rw.path, &rw.cfg, rw.cfg.clock.Now()})
	return rw.readers.leaseOf(o), err
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
	if err := rw.writer.Lock(ctx); err != nil {
		return err
	}
	rw.freshAttempt()
	if _, err := acquire(ctx, writing{rw}, acquisition{"write-locking", rw.path, &rw.cfg, start}); err != nil {
		rw.abandon()
		return err
	}
	rw.heldWrite()
	return nil
}

// reading is an RWLock's read acquisition as an acquirable: a reader slot,
// unless a writer holds or waits for the writer lock.
type reading struct{ rw *RWLock }

func (r reading) try(ctx context.Context) outcome { return r.rw.tryRead(ctx) }

func (r reading) waitSpec() waitSpec {
	rw := r.rw
	return rw.spec("read-locking "+rw.path, append([]string{rw.writer.path}, slotPaths(rw.readers)...))
}

func (r reading) busyError(seen entry, start time.Time) error { return r.rw.busyError(seen, start) }

// writing is an RWLock's write acquisition, once it holds the writer
// lock, as an acquirable: every reader slot.
type writing struct{ rw *RWLock }

func (w writing) try(ctx context.Context) outcome { return w.rw.trySlots(ctx) }

func (w writing) waitSpec() waitSpec {
	rw := w.rw
	return rw.spec("write-locking "+rw.path+" (waiting for readers)", slotPaths(rw.readers))
}

func (w writing) busyError(seen entry, start time.Time) error { return w.rw.busyError(seen, start) }

// spec is what waiting for this RWLock needs, watching paths.
func (rw *RWLock) spec(what string, paths []string) waitSpec {
	return waitSpec{
		what: what, paths: watchPaths(rw.cfg, paths...), patience: rw.cfg.patience,
		clock: rw.cfg.clock, poll: rw.cfg.poll, blocked: rw.testBlocked,
		local: !rw.cfg.noWatch && fsys.IsLocal(filepath.Dir(rw.path)),
	}
}

// busyError is the error of an acquisition that PATIENCE ran out on.
func (rw *RWLock) busyError(seen entry, start time.Time) error {
	return fmt.Errorf("dlock: %s: %w", rw.path, busyError(rw.cfg.clock, rw.writer.path, seen, start))
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

// slotWorkers bounds how many of a writer's slot attempts or releases run
// at once.
const slotWorkers = 32

// eachSlot runs f for each slot in slots, at most slotWorkers at once, and
// returns when every call has returned. A writer's slots are independent
// locks: taken or given back one after another, a writer paid one round
// trip per slot on a network filesystem (33 Lock+Unlock pairs, 2.75 s
// across sshfs, for dlock's flock personality); at once, the round trips
// overlap as far as the server serves them at once (sshfs: 0.33-0.47× of
// the time).
func eachSlot(slots []int, f func(i int)) {
	var wg sync.WaitGroup
	turn := make(chan struct{}, slotWorkers)
	for _, i := range slots {
		turn <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-turn; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}

// freshAttempt marks the writer's next slot attempt as its first.
func (rw *RWLock) freshAttempt() {
	rw.mu.Lock()
	rw.wfresh = true
	rw.mu.Unlock()
}

// trySlots attempts the reader slots the writer does not hold yet,
// keeping those it gets: a writer gains slots as readers leave and never
// gives one back to a new reader (only a writer takes more than one, and
// only the holder of the writer lock, so writers cannot deadlock on the
// slots, in whatever order they take them). Its first attempt tries
// every slot at once and returns once all have answered: acquired when
// all are held, else the first slot's outcome (in order) that was not.
// Later ones, while readers hold slots, go in order and stop at the
// first slot still held, as a waiting writer always did: one look per
// wake, not one per slot. A slot held by a reader of this value is
// waited for like anyone's.
func (rw *RWLock) trySlots(ctx context.Context) outcome {
	if err := rw.readers.check(); err != nil {
		return outcome{err: err}
	}
	rw.mu.Lock()
	fresh := rw.wfresh
	rw.wfresh = false
	have := make([]bool, len(rw.readers.slots))
	for _, p := range rw.wslots {
		have[p.slot] = true
	}
	rw.mu.Unlock()
	var todo []int
	for i, h := range have {
		if !h {
			todo = append(todo, i)
		}
	}
	if !fresh {
		for _, i := range todo {
			if o := rw.trySlot(ctx, i); !o.ok || o.err != nil {
				return o
			}
		}
		return outcome{ok: true}
	}
	results := make([]outcome, len(have))
	eachSlot(todo, func(i int) { results[i] = rw.trySlot(ctx, i) })
	for _, i := range todo {
		if o := results[i]; !o.ok || o.err != nil {
			return o
		}
	}
	return outcome{ok: true}
}

// trySlot attempts reader slot i once for the writer, and records it in
// wslots when taken.
func (rw *RWLock) trySlot(ctx context.Context, i int) outcome {
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
	return outcome{ok: true}
}

// releaseSlots gives every slot in slots back, at once (see eachSlot),
// and returns the first error in slot order and how many failed.
func releaseSlots(slots []*Lease) (first error, failed int) {
	errs := make([]error, len(slots))
	idx := make([]int, len(slots))
	for i := range idx {
		idx[i] = i
	}
	eachSlot(idx, func(i int) { errs[i] = slots[i].Release() })
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return first, failed
}

// abandon releases whatever a failed write acquisition took.
func (rw *RWLock) abandon() {
	rw.mu.Lock()
	slots := rw.wslots
	rw.wslots = nil
	rw.mu.Unlock()
	releaseSlots(slots)
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
