package watch

import (
	"bytes"
	"encoding/binary"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/lockdir/dlock/internal/lockdir"
	"golang.org/x/sys/unix"
)

// backends: inotify itself, and fsnotify, which the other systems use.
var backends = []string{"inotify", "fsnotify"}

func newInotifyHub() hub { return &inotifyHub{} }

// inotifyMask is what a wait needs to hear of: an entry appearing in the
// watched directory (every transition renames an entry in, and a ticket
// is made by mkdir), an entry removed, and the directory itself going.
// Not IN_MOVED_FROM (its rename also moves a name in), IN_ATTRIB or
// IN_MODIFY: each would only wake waiters for nothing. A symlink at the
// path is not followed.
const inotifyMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// maskFor is inotifyMask, and for a ticket in a queue its close too: its
// waiter died (see fsys.HoldOpen).
func maskFor(path string) uint32 {
	if lockdir.IsTicketPath(path) {
		return inotifyMask | unix.IN_CLOSE_NOWRITE
	}
	return inotifyMask
}

// inotifyGone: the watch of the directory has ended, or no longer
// watches what is at its path.
const inotifyGone = unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_IGNORED | unix.IN_UNMOUNT

// inotifyHub is the process's inotify instance. Its reader goroutine
// waits in the runtime's poller and hands each event to the waits
// subscribed to its watch descriptor.
//
// mu is held across inotify_add_watch and the recording of the new
// subscriber, so that no event of the new watch (such as the directory's
// removal) is handed out before the subscriber is there to hear it.
type inotifyHub struct {
	mu     sync.Mutex
	fd     int
	f      *os.File         // nil until made; made again if that failed
	subs   map[int32][]*Sub // by watch descriptor
	broken bool             // reading failed: waits poll
	buf    [64 << 10]byte   // the reader's
}

// subscribe watches path (a descriptor per directory, however many waits
// subscribe to it: the kernel hands back the same one).
func (h *inotifyHub) subscribe(path string, s *Sub) (func(), bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broken || !h.open() {
		return nil, false
	}
	wd, err := unix.InotifyAddWatch(h.fd, path, maskFor(path))
	if err != nil {
		return nil, false
	}
	h.subs[int32(wd)] = append(h.subs[int32(wd)], s)
	return func() { h.unsubscribe(int32(wd), s) }, true
}

// open makes the inotify instance and starts its reader. Called with
// h.mu held.
func (h *inotifyHub) open() bool {
	if h.f != nil {
		return true
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return false // no instance left: waits poll
	}
	h.fd, h.f, h.subs = fd, os.NewFile(uintptr(fd), "inotify"), map[int32][]*Sub{}
	go h.read()
	return true
}

// unsubscribe takes s off wd's subscribers, and removes the watch with
// the last one. (s is not there if the watch ended meanwhile.)
func (h *inotifyHub) unsubscribe(wd int32, s *Sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.subs[wd]
	i := slices.Index(subs, s)
	if i < 0 {
		return
	}
	if subs = slices.Delete(subs, i, i+1); len(subs) > 0 {
		h.subs[wd] = subs
		return
	}
	delete(h.subs, wd)
	unix.InotifyRmWatch(h.fd, uint32(wd))
}

// read hands out events for the life of the process.
func (h *inotifyHub) read() {
	for {
		n, err := h.f.Read(h.buf[:])
		if err != nil {
			// Not expected of an inotify descriptor: stop watching, and
			// let every wait know, so that it polls.
			h.mu.Lock()
			h.broken = true
			h.tellAll()
			h.mu.Unlock()
			return
		}
		h.mu.Lock()
		for b := h.buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
			wd := int32(binary.NativeEndian.Uint32(b[0:]))
			mask := binary.NativeEndian.Uint32(b[4:])
			size := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:]))
			if size > len(b) {
				break
			}
			name, _, _ := bytes.Cut(b[unix.SizeofInotifyEvent:size], []byte{0})
			b = b[size:]
			h.event(wd, mask, name)
		}
		h.mu.Unlock()
		// Let the waits just woken run before this goroutine's next read
		// (which most often finds nothing): a hand-off is on their path.
		runtime.Gosched()
	}
}

// event hands one event to wd's subscribers. Called with h.mu held.
func (h *inotifyHub) event(wd int32, mask uint32, name []byte) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		h.tellAll()
		return
	}
	subs := h.subs[wd]
	gone := mask&inotifyGone != 0
	if gone {
		delete(h.subs, wd)
		if mask&unix.IN_MOVE_SELF != 0 {
			// The directory moved away: what is at its path now is
			// another, which its subscribers watch anew.
			unix.InotifyRmWatch(h.fd, uint32(wd))
		}
	}
	hint := ""
	if mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 && len(subs) > 0 {
		hint = string(name)
	}
	for _, s := range subs {
		s.notify(hint, gone)
	}
}

// overflow tells every subscriber to watch anew and look again.
func (h *inotifyHub) overflow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tellAll()
}

// tellAll tells every subscriber that its watch may have missed events.
// Called with h.mu held.
func (h *inotifyHub) tellAll() {
	for _, subs := range h.subs {
		for _, s := range subs {
			s.notify("", true)
		}
	}
}

func (h *inotifyHub) subscribers(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return 0
	}
	// The same mask again: the kernel hands back path's descriptor and
	// changes nothing (or watches it anew, which is undone).
	wd, err := unix.InotifyAddWatch(h.fd, path, maskFor(path))
	if err != nil {
		return 0
	}
	subs, ok := h.subs[int32(wd)]
	if !ok {
		unix.InotifyRmWatch(h.fd, uint32(wd))
	}
	return len(subs)
}
