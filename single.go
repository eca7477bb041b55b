package dlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// AlreadyRunningError is the error TrySingleInstance returns when another
// instance of the program holds its lock. It matches ErrBusy.
type AlreadyRunningError struct {
	Program string // the program's executable path
	Holder  Holder // the running instance
}

func (e *AlreadyRunningError) Error() string {
	return fmt.Sprintf("another %s is already running (pid %d on %s since %s)",
		e.Program, e.Holder.PID, e.Holder.Host, e.Holder.Since.Local().Format("2006-01-02 15:04:05"))
}

// Is reports whether target is ErrBusy.
func (e *AlreadyRunningError) Is(target error) bool { return target == ErrBusy }

var instance struct {
	sync.Mutex
	lock *Lock
}

// SingleInstance makes this program run once at a time: call it at the top
// of main. It takes a named lock whose name is the program's executable
// path, held until the process exits. If another instance holds it,
// SingleInstance prints "another /path/to/prog is already running (pid N
// on HOST since T)" to stderr and exits with status 1. If the lock is ever
// lost while this instance runs (it was paused for longer than TIMEOUT
// and another instance took over), it says so and exits with status 1
// too, so that two instances never go on together.
//
// Options are those of Named; PATIENCE defaults to 0 (do not wait).
func SingleInstance(opts ...Option) {
	l, err := TrySingleInstance(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		<-l.Lost()
		fmt.Fprintf(os.Stderr, "%s: lost the single-instance lock %s; exiting\n", os.Args[0], l.Path())
		os.Exit(1)
	}()
}

// TrySingleInstance is SingleInstance that returns an error instead of
// exiting: an *AlreadyRunningError (matching ErrBusy) when another
// instance runs. The returned Lock is held until the process exits; watch
// its Lost channel if the program must stop when it loses the lock.
func TrySingleInstance(opts ...Option) (*Lock, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("dlock: single instance: finding this program: %w", err)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	l, err := Named(exe, append([]Option{WithPatience(0)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := l.Lock(context.Background()); err != nil {
		if be := (*BusyError)(nil); errors.As(err, &be) && !be.Holder.Unknown {
			return nil, &AlreadyRunningError{Program: exe, Holder: be.Holder}
		}
		return nil, err
	}
	instance.Lock()
	instance.lock = l // held, and referenced, until the process exits
	instance.Unlock()
	return l, nil
}
