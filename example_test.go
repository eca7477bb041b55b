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
// on many sharing a filesystem.
func Example() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)

	l, err := dlock.New(filepath.Join(dir, "nightly.lock"), dlock.WithTimeout(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Lock(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("running the nightly job")
	if err := l.Unlock(); err != nil {
		log.Fatal(err) // ErrLost: someone reclaimed the lock while we ran
	}
	// Output: running the nightly job
}

// Do runs a function while holding the lock; its context is cancelled if
// the lock is lost.
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
	defer holder.Unlock()

	other, _ := dlock.New(path)
	ok, err := other.TryLock()
	fmt.Println(ok, err)
	st, _ := dlock.Inspect(path)
	fmt.Println(st.Held, st.Holder.PID == os.Getpid())
	// Output:
	// false <nil>
	// true true
}

// PATIENCE bounds the wait; the error names the holder.
func ExampleBusyError() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "report.lock")

	holder, _ := dlock.New(path)
	holder.Lock(context.Background())
	defer holder.Unlock()

	waiter, _ := dlock.New(path, dlock.WithPatience(50*time.Millisecond))
	err := waiter.Lock(context.Background())
	var busy *dlock.BusyError
	if errors.As(err, &busy) {
		fmt.Println(errors.Is(err, dlock.ErrBusy), busy.Holder.PID == os.Getpid())
	}
	// Output: true true
}

// The fence rises with every acquisition: hand it to the resource so that
// it can refuse the work of a holder that was paused and lost the lock.
func ExampleLock_Fence() {
	dir, _ := os.MkdirTemp("", "dlock-example")
	defer os.RemoveAll(dir)
	l, _ := dlock.New(filepath.Join(dir, "fenced.lock"))

	l.Lock(context.Background())
	first := l.Fence()
	l.Unlock()
	l.Lock(context.Background())
	fmt.Println(l.Fence() > first)
	l.Unlock()
	// e.g. UPDATE jobs SET ..., fence = $1 WHERE fence < $1
	// Output: true
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
