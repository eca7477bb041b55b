// Package watch is the process's one watcher, shared by every wait.
//
// A watcher per wait would cost an inotify instance (128 per user by
// default: the 129th waiter of a user would only poll), a reader
// goroutine, and their set-up and tear-down on every contended Lock. So
// one watcher, made at the first wait, serves the whole process: each
// directory is watched once, however many waits subscribe to it, and the
// watch is removed when its last subscriber leaves (so that a holder is
// not woken by its own heartbeats and release). The watcher itself stays:
// without watches it costs one descriptor and one parked goroutine.
//
// On Linux the watcher is inotify itself (watch_linux.go): it asks only
// for the events waiting needs, and hands them to the waits without a
// further goroutine. Elsewhere it is an fsnotify Watcher
// (watch_fsnotify.go).
package watch

import (
	"slices"
	"sync"
)

// hub is the process's watcher.
type hub interface {
	// subscribe adds s to the subscribers of the directory at path,
	// watching it if nobody did. It reports whether path is watched, and
	// returns the function that ends the subscription.
	subscribe(path string, s *Sub) (cancel func(), ok bool)
	// overflow tells every subscriber that events may have been lost.
	overflow()
	// subscribers counts the subscriptions to path.
	subscribers(path string) int
}

// theHub is this process's watcher: the first of backends (watch_*.go).
var theHub = hubs[backends[0]]()

// hubs makes each watcher by name.
var hubs = map[string]func() hub{
	"inotify":  newInotifyHub, // nil where there is none
	"fsnotify": func() hub { return &fsnotifyHub{} },
}

// Sub is one wait's subscription to the shared watcher. If a path cannot
// be watched, or a watched one goes, the wait goes on by polling and sets
// its watches anew at its next attempt. The zero Sub watches nothing.
type Sub struct {
	c       chan struct{} // signalled when something happened
	paths   []string
	cancel  []func() // by path: nil where it could not be watched
	watched bool     // every one of paths is watched

	mu    sync.Mutex
	names []string // names of entries created, for hints (the newest few)
	over  bool     // names were dropped
	gone  bool     // a watched path went away
}

// maxHints bounds the entry names kept between two looks.
const maxHints = 8

// notify records an event for s and wakes its wait. Called by the hub.
func (s *Sub) notify(name string, gone bool) {
	s.mu.Lock()
	if name != "" {
		if len(s.names) == maxHints {
			s.names, s.over = s.names[1:], true // keep the newest
		}
		s.names = append(s.names, name)
	}
	s.gone = s.gone || gone
	s.mu.Unlock()
	select {
	case s.c <- struct{}{}:
	default: // already signalled
	}
}

// Watched reports whether every path of the last Set or Update is
// watched.
func (s *Sub) Watched() bool { return s.watched }

// Set makes the watch cover paths, as far as they can be watched, and
// reports whether every one is.
func (s *Sub) Set(paths []string) bool {
	all, _ := s.Update(paths)
	return all
}

// Update is Set that also reports whether it subscribed a path it did not
// watch a moment ago: a look is then due, since a change made before the
// subscription sent no event. For the same paths it keeps the
// subscriptions it has and only tries again those that failed (a
// directory that did not exist yet): a path watched all along loses no
// event. (Dropping them all to subscribe afresh lost, between the two, the
// release a waiter was waiting for.)
func (s *Sub) Update(paths []string) (all, added bool) {
	if len(paths) == 0 {
		return false, false // watching is off
	}
	s.mu.Lock()
	gone := s.gone
	s.gone = false
	s.mu.Unlock()
	if s.c == nil {
		s.c = make(chan struct{}, 1)
	}
	if gone || !slices.Equal(s.paths, paths) {
		s.Close()
		// What the old watches said (until close ended them) is of paths
		// no longer watched: a look at the new ones follows. Kept, it
		// would tell a waiter that its new predecessor had left.
		s.mu.Lock()
		s.gone, s.names, s.over = false, nil, false
		s.mu.Unlock()
		select {
		case <-s.c:
		default:
		}
		s.paths = append(s.paths[:0], paths...)
		s.cancel = append(s.cancel[:0], make([]func(), len(paths))...)
	}
	s.watched = true
	for i, p := range s.paths {
		if s.cancel[i] != nil {
			continue
		}
		cancel, ok := theHub.subscribe(p, s)
		if !ok {
			s.watched = false
			continue
		}
		s.cancel[i], added = cancel, true
	}
	return s.watched, added
}

// Events returns the channel signalled on changes; nil (never ready) when
// nothing is watched.
func (s *Sub) Events() <-chan struct{} {
	return s.c
}

// Drain takes the names of the entries created since the last drain and
// passes them to hint (which may be nil), oldest first. One attempt
// answers them all. It reports whether the events are all there were
// (not if events were lost, or names dropped), and whether a watched path
// went.
func (s *Sub) Drain(hint func(string)) (complete, gone bool) {
	s.mu.Lock()
	names, gone, over := s.names, s.gone, s.over
	s.names, s.over = nil, false
	s.mu.Unlock()
	if hint != nil {
		for _, n := range names {
			hint(n)
		}
	}
	return !gone && !over, gone
}

// Close ends the subscriptions.
func (s *Sub) Close() {
	for _, cancel := range s.cancel {
		if cancel != nil {
			cancel()
		}
	}
	s.paths, s.cancel, s.watched = s.paths[:0], s.cancel[:0], false
}

// Overflow tells every subscriber that events may have been lost, as the
// kernel's queue overflowing does: for tests.
func Overflow() { theHub.overflow() }

// Subscribers counts this process's subscriptions to path: for tests.
func Subscribers(path string) int { return theHub.subscribers(path) }

// Backends names the watchers this OS can use; the first is the default.
func Backends() []string { return backends }

// Use makes the watcher named (one of Backends) the process's, until
// restore is called: for tests, which run on each.
func Use(name string) (restore func()) {
	saved := theHub
	theHub = hubs[name]()
	return func() { theHub = saved }
}
