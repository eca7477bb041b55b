package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/lockdir/dlock"
)

// A lock around a job that must never run twice at once, on one host or
// on many sharing a filesystem. Unlock's error is joined into the job's:
// it is ErrLost if another process took the lock while the job ran, which
// a bare defer l.Unlock() would throw away.
func Example() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)

	l, err := dlock.New(filepath.Join(dir, "nightly.lock"), dlock.WithTimeout(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	nightly := func(ctx context.Context) (err error) {
		if err := l.Lock(ctx); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, l.Unlock()) }()
		fmt.Println("running the nightly job")
		return nil
	}
	if err := nightly(context.Background()); err != nil {
		log.Fatal(err)
	}
	// Output: running the nightly job
}

// Unlock reports ErrLost when the lock was taken away while held: here
// another process breaks it by force while the job runs, as dlock break
// -force would.
func ExampleLock_Unlock() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	l, _ := dlock.New(filepath.Join(dir, "nightly.lock"))
	other, _ := dlock.New(l.Path()) // as another process would

	nightly := func(ctx context.Context) (err error) {
		if err := l.Lock(ctx); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, l.Unlock()) }()
		other.Break(true) // the lock is taken away while the job runs
		return nil
	}
	err := nightly(context.Background())
	fmt.Println(errors.Is(err, dlock.ErrLost))
	// Output: true
}

// Do runs a function while holding the lock; its context is cancelled if
// the lock is lost, and Do returns the function's error joined with
// Unlock's (ErrLost if the lock was lost).
func ExampleLock_Do() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)

	l, _ := dlock.New(filepath.Join(dir, "migrate.lock"), dlock.WithPatience(time.Minute))
	err := l.Do(context.Background(), func(ctx context.Context) error {
		fmt.Println("migrating")
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// migrating
	// err: <nil>
}

// TryLock makes one attempt; a busy lock is (false, nil), and Inspect says
// who holds it.
func ExampleLock_TryLock() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "cron.lock")

	holder, _ := dlock.New(path)
	holder.Lock(context.Background())

	other, _ := dlock.New(path)
	ok, err := other.TryLock()
	fmt.Println(ok, err)
	st, _ := dlock.Inspect(path)
	fmt.Println(st.Held, st.Holder.PID == os.Getpid())
	fmt.Println(holder.Unlock())
	// Output:
	// false <nil>
	// true true
	// <nil>
}

// PATIENCE bounds the wait; the error names the holder.
func ExampleBusyError() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "report.lock")

	holder, _ := dlock.New(path)
	holder.Lock(context.Background())

	waiter, _ := dlock.New(path, dlock.WithPatience(50*time.Millisecond))
	err := waiter.Lock(context.Background())
	var busy *dlock.BusyError
	if errors.As(err, &busy) {
		fmt.Println(errors.Is(err, dlock.ErrBusy), busy.Holder.PID == os.Getpid())
	}
	fmt.Println(holder.Unlock())
	// Output:
	// true true
	// <nil>
}

// The fence rises with every acquisition: hand it to the resource so that
// it can refuse the work of a holder that was paused and lost the lock.
// Here the resource is a variable that keeps the highest fence it took; a
// table keeps it in a BIGINT column and makes the check part of the write:
//
//	UPDATE jobs SET result = $2, fence = $1 WHERE id = $3 AND fence <= $1
//
// refused if it changes no row.
func ExampleLock_Fence() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "fenced.lock")

	var stored uint64 // the resource's highest fence
	write := func(fence uint64) error {
		if fence < stored {
			return fmt.Errorf("write with fence %d refused: %d wrote since", fence, stored)
		}
		stored = fence
		return nil
	}

	paused, _ := dlock.New(path, dlock.WithTimeout(time.Second))
	paused.Lock(context.Background())
	late := paused.Fence()
	// paused stops here for longer than TIMEOUT; another process breaks
	// the lock, takes it and writes.
	next, _ := dlock.New(path)
	next.Break(true)
	next.Lock(context.Background())
	fmt.Println("next's write:", write(next.Fence()))
	fmt.Println("next's Unlock:", next.Unlock())
	// paused wakes up and writes: refused, and its Unlock says why.
	fmt.Println("paused's write refused:", write(late) != nil)
	fmt.Println("paused's Unlock is ErrLost:", errors.Is(paused.Unlock(), dlock.ErrLost))
	// Output:
	// next's write: <nil>
	// next's Unlock: <nil>
	// paused's write refused: true
	// paused's Unlock is ErrLost: true
}

// A lock by name, in the per-user lock directory (or WithDir's).
func ExampleNamed() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)

	l, err := dlock.Named("reports: nightly/eu", dlock.WithDir(dir))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(l.Path()))
	// Output: n-reports%3a%20nightly%2feu
}

// At most three holders at once, across processes and hosts.
func ExampleSemaphore() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)

	s, _ := dlock.NewSemaphore(filepath.Join(dir, "downloads"), 3)
	err := s.Do(context.Background(), func(ctx context.Context) error {
		fmt.Println("one of at most 3 downloads")
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// one of at most 3 downloads
	// err: <nil>
}

// Many readers or one writer; a waiting writer holds new readers back.
func ExampleRWLock() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "catalog")

	r1, _ := dlock.NewRWLock(path)
	r2, _ := dlock.NewRWLock(path)
	w, _ := dlock.NewRWLock(path)
	r1.RLock(context.Background())
	r2.RLock(context.Background())
	ok, _ := w.TryLock()
	fmt.Println("writer while two read:", ok)
	r1.RUnlock()
	r2.RUnlock()
	ok, _ = w.TryLock()
	fmt.Println("writer alone:", ok)
	w.Unlock()
	// Output:
	// writer while two read: false
	// writer alone: true
}

// One call at the top of main makes a program run once at a time.
func ExampleSingleInstance() {
	dlock.SingleInstance() // prints "another /usr/bin/prog is already running (pid N on HOST since T)" and exits 1
	// ... the rest of main runs in one process at a time
}

// Hosts sharing a network filesystem hand a lock over in about one
// network round trip, with a poll long enough to spare the server: each
// passes WithWakeHints with the address the others reach it at ("" for
// this host's first non-loopback one). Here both Locks are in one process,
// on loopback, and neither watches the directory: the waiter hears of the
// release by the datagram, not at its 2s poll. A process that exits right
// after Unlock waits for its hints to be sent (WaitHints).
func ExampleWithWakeHints() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "shared.lock")
	opts := []dlock.Option{dlock.WithWakeHints("127.0.0.1"), dlock.WithPollInterval(2 * time.Second), dlock.WithWatch(false)}
	a, _ := dlock.New(path, opts...)
	b, _ := dlock.New(path, opts...)
	if err := a.Lock(context.Background()); err != nil {
		log.Fatal(err)
	}
	got := make(chan error)
	go func() { got <- b.Lock(context.Background()) }()
	time.Sleep(100 * time.Millisecond) // b waits (if not yet, it finds the lock free: the same)
	a.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.WaitHints(ctx)
	if err := <-got; err != nil {
		log.Fatal(err)
	}
	fmt.Println("b holds the lock")
	b.Unlock()
	// Output: b holds the lock
}
