package dlock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/fsnotify/fsnotify"
)

// waitSpec is what a waiting acquisition needs: what to watch, and one
// attempt that reports, when it fails, the holder it saw and when that
// holder becomes stale (the zero time if never by itself).
type waitSpec struct {
	what     string // for errors: "lock /x", "semaphore /y"
	paths    []string
	clock    clock.Clock
	patience time.Duration // < 0: no limit
	poll     time.Duration
	try      func() (ok bool, seen entry, staleAt time.Time, err error)
	blocked  func() // test hook, may be nil
	busy     func(seen entry, start time.Time) error
}

// wait retries until the attempt succeeds, ctx is done or PATIENCE runs
// out. Between attempts it sleeps until the first of: an fsnotify event in
// a watched directory (local changes), the jittered poll interval (changes
// by other clients of a network filesystem, which no watch sees), the
// moment the holder seen becomes stale, or the PATIENCE deadline. All
// timers come from the given clock.
func wait(ctx context.Context, w waitSpec, start time.Time) error {
	var deadline time.Time
	if w.patience > 0 {
		deadline = start.Add(w.patience)
	}
	wt := watch{paths: w.paths}
	defer wt.close()
	timer := w.clock.Timer(time.Hour)
	defer timer.Stop()
	for {
		// Watch first, then look: a change between the two is then either
		// seen by the look or delivered as an event.
		wt.ensure()
		ok, seen, staleAt, err := w.try()
		if ok || err != nil {
			return err
		}
		now := w.clock.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return w.busy(seen, start)
		}
		next := w.poll*3/4 + rand.N(w.poll/4+1)
		if staleAt.After(now) && staleAt.Sub(now) < next {
			next = staleAt.Sub(now)
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
		if w.blocked != nil {
			w.blocked()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlock: %s: gave up after %v waiting for %s: %w",
				w.what, w.clock.Since(start).Round(time.Millisecond), seen.holder, context.Cause(ctx))
		case <-timer.C:
		case <-wt.events():
			wt.drain()
		case <-wt.errors():
			wt.drain()
		}
	}
}

// watch is one fsnotify watcher on a few directories, made per wait
// (inotify instances are scarce: 128 per user by default) and closed when
// the wait ends. If it cannot be made, or a directory is replaced, waiting
// goes on by polling alone and the watch is tried again at the next
// attempt.
type watch struct {
	paths   []string
	w       *fsnotify.Watcher
	watched int // how many of paths are watched; re-added when one goes
}

func (w *watch) ensure() {
	if w.watched == len(w.paths) {
		return
	}
	if w.w == nil {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			return
		}
		w.w = fw
	}
	w.watched = 0
	for _, p := range w.paths {
		if w.w.Add(p) == nil {
			w.watched++
		}
	}
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
			for _, p := range w.paths {
				if ev.Name == p && ev.Has(fsnotify.Remove|fsnotify.Rename) {
					w.watched = -1 // a watched directory went: watch its successor
				}
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
