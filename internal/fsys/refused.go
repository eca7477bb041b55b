package fsys

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"
)

// ErrTransient is what an error matches when the OS refused a call for a
// reason that passes by itself: on Windows, another process (an
// antivirus, an indexer, a backup, a waiter's own handle) has the entry or
// a directory on the path open, a sharing or lock violation or "Access
// is denied", or a name is delete-pending (removed, but held open by
// someone: it can be neither used nor made again until they close it).
// Each contract call retries such a refusal for a moment (retryDelays)
// before it reports one; the dlock package goes on retrying within
// PATIENCE and never takes it for a busy lock, a lost one, or a fatal
// error. On Windows "Access is denied" is also what a real lack of
// permission says, and the two cannot be told apart from the error: a
// lasting one is reported when PATIENCE ends, naming both causes.
var ErrTransient = errors.New("refused for now")

// RefusedError is a call refused for a reason that passes, after its
// retries: it matches ErrTransient and the OS's error.
type RefusedError struct {
	Op, Path string
	Err      error
	For      time.Duration // how long the call was retried
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s %s: %v (for %v: another program, such as an antivirus, indexer or backup, may have it open; or access is denied)",
		e.Op, e.Path, e.Err, e.For.Round(time.Millisecond))
}

func (e *RefusedError) Unwrap() []error { return []error{e.Err, ErrTransient} }

// IsTransient reports whether err is a refusal that passes by itself:
// ErrTransient, or the OS's own errors for one.
func IsTransient(err error) bool {
	return err != nil && (errors.Is(err, ErrTransient) || transientOS(err))
}

// retryDelays: a refused call is tried again after each of these, about
// a quarter of a second in all, which outlasts the usual scan of an
// antivirus or indexer; a longer refusal is the caller's to wait out.
var retryDelays = [...]time.Duration{
	1 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond,
	16 * time.Millisecond, 32 * time.Millisecond, 64 * time.Millisecond, 128 * time.Millisecond,
}

// Fault, set by tests only, is asked before each contract call (op is
// "rename", "list", "remove" or "stat"; path the entry or directory it
// acts on): a non-nil error is the call's answer instead of the system
// call's, treated exactly as the OS's own (refusals are retried). It is
// how the tests play Windows' refusals on every OS.
var Fault atomic.Pointer[func(op, path string) error]

// release is told of a directory this process is about to remove, or
// that a call was refused on: the watcher lets go of it (SetRelease).
var release atomic.Pointer[func(path string)]

// SetRelease registers f, called on Windows with a directory's path
// before this process removes it and when a call on it was refused:
// whatever of ours holds it open (the watcher) must let go, or its name
// stays, delete-pending, as long as we hold it.
func SetRelease(f func(path string)) { release.Store(&f) }

func fault(op, path string) error {
	if f := Fault.Load(); f != nil {
		return (*f)(op, path)
	}
	return nil
}

// refused tells release of the paths a refused call named, and their
// directories.
func refused(paths ...string) {
	f := release.Load()
	if f == nil || !releaseOnRefusal {
		return
	}
	for _, p := range paths {
		(*f)(p)
		(*f)(filepath.Dir(p))
	}
}

// retry1 and retry2 make the call f (a function value, not a closure:
// nothing allocates on the way), retrying a refusal that passes.
func retry1(op string, f func(string) error, a string) error {
	err := fault(op, a)
	if err == nil {
		err = f(a)
	}
	if err == nil || !IsTransient(err) {
		return err
	}
	start := time.Now()
	for _, d := range retryDelays {
		refused(a)
		time.Sleep(d)
		if err = fault(op, a); err == nil {
			err = f(a)
		}
		if err == nil || !IsTransient(err) {
			return err
		}
	}
	return &RefusedError{Op: op, Path: a, Err: err, For: time.Since(start)}
}

func retry2(op string, f func(string, string) error, a, b string) error {
	err := fault(op, a)
	if err == nil {
		err = f(a, b)
	}
	if err == nil || !IsTransient(err) {
		return err
	}
	start := time.Now()
	for _, d := range retryDelays {
		refused(a, b)
		time.Sleep(d)
		if err = fault(op, a); err == nil {
			err = f(a, b)
		}
		if err == nil || !IsTransient(err) {
			return err
		}
	}
	return &RefusedError{Op: op, Path: a, Err: err, For: time.Since(start)}
}

func retryV[T any](op string, f func(string) (T, error), a string) (T, error) {
	var v T
	err := fault(op, a)
	if err == nil {
		v, err = f(a)
	}
	if err == nil || !IsTransient(err) {
		return v, err
	}
	start := time.Now()
	for _, d := range retryDelays {
		refused(a)
		time.Sleep(d)
		if err = fault(op, a); err == nil {
			v, err = f(a)
		}
		if err == nil || !IsTransient(err) {
			return v, err
		}
	}
	return v, &RefusedError{Op: op, Path: a, Err: err, For: time.Since(start)}
}
