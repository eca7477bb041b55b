package dlock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fsnotify/fsnotify"
)

// wait retries the lock until it is acquired, ctx is done or PATIENCE runs
// out. Between attempts it sleeps until the first of: an fsnotify event in
// the lock directory (local changes), the jittered poll interval (changes
// by other clients of a network filesystem, which no watch sees), the
// moment the current holder becomes stale, or the PATIENCE deadline. All
// timers come from the Lock's clock.
func (l *Lock) wait(ctx context.Context, start time.Time) error {
	clk := l.cfg.clock
	var deadline time.Time
	if l.cfg.patience > 0 {
		deadline = start.Add(l.cfg.patience)
	}
	w := watch{path: l.path}
	defer w.close()
	timer := clk.Timer(time.Hour)
	defer timer.Stop()
	var seen entry
	for {
		// Watch first, then look: a release between the two is then
		// either seen by the look or delivered as an event.
		w.ensure()
		ok, e, err := l.try()
		if ok || err != nil {
			return err
		}
		seen = e
		now := clk.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return l.busyError(seen, start)
		}
		next := l.cfg.poll*3/4 + rand.N(l.cfg.poll/4+1)
		if at := l.staleAtLocked(now, seen); at.After(now) && at.Sub(now) < next {
			next = at.Sub(now)
		}
		if !deadline.IsZero() && deadline.Sub(now) < next {
			next = deadline.Sub(now)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
		if hook := l.testBlocked; hook != nil {
			hook()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlock: locking %s: gave up after %v waiting for %s: %w",
				l.path, clk.Since(start).Round(time.Millisecond), seen.holder, context.Cause(ctx))
		case <-timer.C:
		case <-w.events():
			w.drain()
		case <-w.errors():
			w.drain()
		}
	}
}

// staleAtLocked is staleAt for callers without l.mu.
func (l *Lock) staleAtLocked(now time.Time, e entry) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, _ := l.staleAt(now, e)
	return at
}

// watch is an fsnotify watch on the lock directory, made per wait (inotify
// instances are scarce: 128 per user by default) and closed when the wait
// ends. If it cannot be made, or the directory is replaced, waiting goes on
// by polling alone and the watch is tried again at the next attempt.
type watch struct {
	path string
	w    *fsnotify.Watcher
	ok   bool // the directory is watched
}

func (w *watch) ensure() {
	if w.ok {
		return
	}
	if w.w == nil {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			return
		}
		w.w = fw
	}
	w.ok = w.w.Add(w.path) == nil
}

func (w *watch) events() <-chan fsnotify.Event {
	if w.w == nil {
		return nil
	}
	return w.w.Events
}

func (w *watch) errors() <-chan error {
	if w.w == nil {
		return nil
	}
	return w.w.Errors
}

// drain consumes queued events and errors: one attempt answers them all.
// An error (such as an inotify queue overflow) means "look again", which
// the caller does anyway.
func (w *watch) drain() {
	for {
		select {
		case ev := <-w.w.Events:
			if ev.Name == w.path && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				w.ok = false // the directory itself went: watch its successor
				w.w.Remove(w.path)
			}
		case <-w.w.Errors:
		default:
			return
		}
	}
}

func (w *watch) close() {
	if w.w != nil {
		w.w.Close()
	}
}
