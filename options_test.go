package dlock

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewValidatesOptions(t *testing.T) {
	for _, opts := range [][]Option{
		{WithTimeout(0)},
		{WithTimeout(time.Second), WithRefresh(time.Second)},
		{WithRefresh(-1)},
		{WithPollInterval(0)},
		{WithClock(nil)},
		{WithMargin(0)},
		{WithTimeout(3 * time.Second), WithMargin(2 * time.Second)}, // REFRESH 1s + MARGIN 2s
		{WithMaxClockSkew(-1)},
	} {
		if _, err := New("x", opts...); err == nil {
			t.Errorf("New accepted %d bad options", len(opts))
		}
	}
	if _, err := New(""); err == nil {
		t.Error("New accepted an empty path")
	}
}

// Values made without their constructors say so instead of panicking.
func TestZeroValuesSaySo(t *testing.T) {
	var l Lock
	var s Semaphore
	var rw RWLock
	ctx := context.Background()
	for name, err := range map[string]error{
		"Lock.Lock":       l.Lock(ctx),
		"Lock.TryLock":    second(l.TryLock()),
		"Lock.Status":     second(l.Status()),
		"Lock.Break":      second(l.Break(false)),
		"Semaphore.Take":  second(s.Take(ctx)),
		"Semaphore.Do":    s.Do(ctx, func(context.Context) error { return nil }),
		"Semaphore.Lock":  s.Lock(ctx),
		"RWLock.Lock":     rw.Lock(ctx),
		"RWLock.RLock":    rw.RLock(ctx),
		"RWLock.TryRLock": second(rw.TryRLock()),
		"RWLock.TryLock":  second(rw.TryLock()),
	} {
		if err == nil || !strings.Contains(err.Error(), "zero") || !strings.Contains(err.Error(), "dlock.New") {
			t.Errorf("%s on a zero value = %v, want an error naming its constructor", name, err)
		}
	}
	if err := l.Unlock(); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Unlock of a zero Lock = %v, want ErrNotHeld", err)
	}
}

func second[T any](_ T, err error) error { return err }

// An option for another kind of lock is an error, naming the option and
// the kind, rather than silently ignored.
func TestOptionsForAnotherKindAreRefused(t *testing.T) {
	dir := t.TempDir()
	for name, err := range map[string]error{
		"New WithDir":                 second(New(filepath.Join(dir, "l"), WithDir(dir))),
		"New WithMaxReaders":          second(New(filepath.Join(dir, "l"), WithMaxReaders(4))),
		"NewSemaphore WithMaxReaders": second(NewSemaphore(filepath.Join(dir, "s"), 2, WithMaxReaders(4))),
		"NewSemaphore WithDir":        second(NewSemaphore(filepath.Join(dir, "s"), 2, WithDir(dir))),
		"NewRWLock WithDir":           second(NewRWLock(filepath.Join(dir, "rw"), WithDir(dir))),
		"Named WithMaxReaders":        second(Named("job", WithDir(dir), WithMaxReaders(4))),
	} {
		if err == nil || !strings.Contains(err.Error(), "With") {
			t.Errorf("%s = %v, want an error naming the option", name, err)
		}
	}
	if _, err := Named("job", WithDir(dir)); err != nil {
		t.Errorf("Named with WithDir = %v", err)
	}
	if _, err := NewRWLock(filepath.Join(dir, "rw"), WithMaxReaders(4)); err != nil {
		t.Errorf("NewRWLock with WithMaxReaders = %v", err)
	}
}
