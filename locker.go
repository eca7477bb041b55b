package dlock

import (
	"context"
	"errors"
)

// Locker is what every dlock lock offers, whatever keeps it: a lock
// directory on a (shared) filesystem (*Lock) or a coordination service
// such as etcd (the etcdlock module). Code written against Locker works
// with either.
type Locker interface {
	// Lock waits until the lock is acquired, ctx is done, or PATIENCE runs
	// out (an error matching ErrBusy).
	Lock(ctx context.Context) error
	// TryLock makes one attempt: (false, nil) when another holds the lock.
	TryLock() (bool, error)
	// Unlock releases the lock: ErrNotHeld if it is not held, ErrLost if it
	// was taken away while held.
	Unlock() error
	// Lost is closed when the lock, while held, was reclaimed by another
	// holder or removed.
	Lost() <-chan struct{}
	// Fence is the fencing token of the current (or last) acquisition. It
	// rises on every acquisition of the lock by any holder.
	Fence() uint64
}

// Do acquires l, runs fn while holding it and releases it. The context
// given to fn is cancelled (with cause ErrLost) if the lock is lost while
// fn runs. Do returns fn's error joined with any error from Unlock; an
// error from Lock is returned as it is, without running fn.
//
// A Semaphore, and an RWLock's RLocker, serve many goroutines at once
// through one value: Do takes a slot of its own for each call (as
// Semaphore.Do and RWLock.RDo do), so goroutines may share l.
func Do(ctx context.Context, l Locker, fn func(ctx context.Context) error) error {
	if s, ok := l.(shared); ok {
		return s.doOwn(ctx, fn)
	}
	if err := l.Lock(ctx); err != nil {
		return err
	}
	return runHeld(ctx, l.Lost(), fn, l.Unlock)
}

// shared is a Locker whose one value serves many holders at once (a
// Semaphore, an RWLock's RLocker): doOwn is Do with a holding of the
// call's own (Semaphore.Do, RWLock.RDo).
type shared interface {
	doOwn(ctx context.Context, fn func(ctx context.Context) error) error
}

// runHeld runs fn, with a context cancelled (cause ErrLost) once lost is
// closed, then calls release: fn's error joined with release's.
func runHeld(ctx context.Context, lost <-chan struct{}, fn func(ctx context.Context) error, release func() error) error {
	fnCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-lost:
			cancel(ErrLost)
		case <-stop:
		}
	}()
	err := fn(fnCtx)
	close(stop)
	<-done
	return errors.Join(err, release())
}
