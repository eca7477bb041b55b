package watch

import (
	"path/filepath"
	"slices"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// fsnotifyHub is the shared fsnotify watcher and who subscribes to what.
//
// Locking: op serializes subscribing and unsubscribing, and is held
// across the watcher's Add and Remove; mu guards the fields and is never
// held across a call into the watcher, because fsnotify may block on
// sending to dispatch (which takes mu) while holding its own lock.
type fsnotifyHub struct {
	op    sync.Mutex
	mu    sync.Mutex
	w     *fsnotify.Watcher // nil until made; made again if that failed
	paths map[string][]*Sub
}

// watcher returns the shared watcher, making it if needed; nil if it
// cannot be made (no inotify instance left): waits then poll. Called with
// h.op held.
func (h *fsnotifyHub) watcher() *fsnotify.Watcher {
	if h.w == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return nil
		}
		h.mu.Lock()
		h.w, h.paths = w, map[string][]*Sub{}
		h.mu.Unlock()
		go h.dispatch(w)
	}
	return h.w
}

func (h *fsnotifyHub) subscribe(path string, s *Sub) (func(), bool) {
	h.op.Lock()
	defer h.op.Unlock()
	w := h.watcher()
	if w == nil {
		return nil, false
	}
	h.mu.Lock()
	subs, watched := h.paths[path]
	h.paths[path] = append(subs, s)
	h.mu.Unlock()
	cancel := func() { h.unsubscribe(path, s) }
	if watched {
		return cancel, true
	}
	// Subscribed before the watch is made: no event of the new watch can
	// find path without subscribers.
	if w.Add(path) == nil {
		return cancel, true
	}
	h.mu.Lock()
	h.remove(path, s)
	h.mu.Unlock()
	return nil, false
}

// unsubscribe removes s from the subscribers of path, and the watch of
// path with the last one.
func (h *fsnotifyHub) unsubscribe(path string, s *Sub) {
	h.op.Lock()
	defer h.op.Unlock()
	h.mu.Lock()
	last := h.remove(path, s)
	h.mu.Unlock()
	if last {
		h.w.Remove(path)
	}
}

// remove takes s off path's subscribers and reports whether it was the
// last one. (It was not subscribed if path went, and its watch with it.)
// Called with h.mu held.
func (h *fsnotifyHub) remove(path string, s *Sub) bool {
	subs := h.paths[path]
	i := slices.Index(subs, s)
	if i < 0 {
		return false
	}
	if subs = slices.Delete(subs, i, i+1); len(subs) > 0 {
		h.paths[path] = subs
		return false
	}
	delete(h.paths, path)
	return true
}

// dispatch passes the watcher's events to the subscribers, until the
// watcher is closed (which dlock never does).
func (h *fsnotifyHub) dispatch(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			h.event(ev)
		case _, ok := <-w.Errors:
			if !ok {
				return
			}
			h.overflow()
		}
	}
}

func (h *fsnotifyHub) event(ev fsnotify.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A watched path itself removed or moved away: fsnotify dropped its
	// watch; its subscribers must watch anew.
	if subs, ok := h.paths[ev.Name]; ok && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		delete(h.paths, ev.Name)
		for _, s := range subs {
			s.notify("", true)
		}
	}
	// A change inside a watched directory.
	if subs, ok := h.paths[filepath.Dir(ev.Name)]; ok {
		name := ""
		if ev.Has(fsnotify.Create) {
			name = filepath.Base(ev.Name)
		}
		for _, s := range subs {
			s.notify(name, false)
		}
	}
}

// overflow handles an error from the watcher, such as an inotify queue
// overflow: events were lost, among them perhaps a watch's end. Every
// subscriber is told to watch anew and look again.
func (h *fsnotifyHub) overflow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.paths {
		for _, s := range subs {
			s.notify("", true)
		}
	}
}

func (h *fsnotifyHub) subscribers(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.paths[path])
}
