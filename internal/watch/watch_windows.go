package watch

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"golang.org/x/sys/windows"
)

// On Windows the watcher is ReadDirectoryChangesW itself, not fsnotify:
//
//   - fsnotify v1.10's Windows backend can close a watch's handle twice
//     when a completion for it is still queued as the watch is removed
//     (fsnotify/fsnotify#768): the second CloseHandle closes whatever
//     handle Windows gave that number to meanwhile, the Go runtime's own
//     included. Waits add and remove watches all the time; under Wine a
//     listing of the lock failed with "Invalid handle" within a few runs.
//     Here each watched directory has one goroutine that alone opens,
//     reads and closes its handle.
//   - A watch is a handle open on the directory, and a directory open
//     elsewhere is not removed at once: where the filesystem has no POSIX
//     delete semantics (FAT, many SMB servers, Wine) its name stays,
//     delete-pending, until every handle is closed, and meanwhile it can be
//     neither listed, made again nor renamed onto ("Access is denied").
//     A waiter watching its predecessor's ticket would keep alive the very
//     name whose removal it waits to hear of. So a ticket is watched
//     through its queue directory, which hears the removal as a change
//     inside it; and before this process removes a directory, or when a
//     call on one was refused, its watch is ended (fsys.SetRelease).

// backends: ReadDirectoryChangesW alone.
var backends = windowsBackends()

var newInotifyHub func() hub

func windowsBackends() []string {
	hubs["readdirchanges"] = func() hub { return &rdcwHub{} }
	return []string{"readdirchanges"}
}

func init() {
	fsys.SetRelease(func(path string) {
		if h, ok := theHub.(*rdcwHub); ok {
			h.drop(path)
		}
	})
}

// rdcwHub is the process's watcher: one rdcwDir per watched directory,
// however many waits subscribe through it.
//
// Locking: op serializes subscribing, unsubscribing and dropping; mu
// guards the maps and is taken by the readers to hand out events, so it
// is never held while waiting for a reader to stop.
type rdcwHub struct {
	op    sync.Mutex
	mu    sync.Mutex
	dirs  map[string]*rdcwDir // by directory
	paths map[string][]*Sub   // subscribers, by path watched
}

// rdcwDir is the watch of one directory.
type rdcwDir struct {
	h       windows.Handle
	n       int // subscriptions using it (guarded by the hub's op)
	stopped atomic.Bool
	done    chan struct{}
	// mu guards h's closing: once the reader closed it, its number may be
	// another handle's, which a cancel must not touch.
	mu     sync.Mutex
	closed bool
}

// dirOf is the directory watched for path: the path itself, or for a
// ticket its queue directory.
func dirOf(path string) string {
	if lockdir.IsTicketPath(path) {
		return filepath.Dir(path)
	}
	return path
}

func (h *rdcwHub) subscribe(path string, s *Sub) (func(), bool) {
	h.op.Lock()
	defer h.op.Unlock()
	dir := dirOf(path)
	h.mu.Lock()
	if h.dirs == nil {
		h.dirs, h.paths = map[string]*rdcwDir{}, map[string][]*Sub{}
	}
	// Subscribed before the watch is made: no event of the new watch can
	// find path without subscribers.
	h.paths[path] = append(h.paths[path], s)
	d := h.dirs[dir]
	h.mu.Unlock()
	if d == nil {
		d = h.open(dir)
	}
	ok := d != nil
	if ok {
		d.n++
		if dir != path { // a ticket: it must exist, as a watch of its own would
			if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
				h.release(dir, d)
				ok = false
			}
		}
	}
	if !ok {
		h.mu.Lock()
		h.remove(path, s)
		h.mu.Unlock()
		return nil, false
	}
	return func() {
		h.op.Lock()
		defer h.op.Unlock()
		h.release(dir, d) // the handle first: once path counts no subscriber, nothing of ours holds it
		h.mu.Lock()
		h.remove(path, s)
		h.mu.Unlock()
	}, true
}

// open starts the watch of dir: nil if it cannot be watched (missing, not
// a directory, a symlink or junction). Called with h.op held.
func (h *rdcwHub) open(dir string) *rdcwDir {
	p, err := windows.UTF16PtrFromString(fsys.LongPath(dir))
	if err != nil {
		return nil
	}
	fh, err := windows.CreateFile(p, windows.FILE_LIST_DIRECTORY,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_BACKUP_SEMANTICS|windows.FILE_FLAG_OPEN_REPARSE_POINT|windows.FILE_FLAG_OVERLAPPED, 0)
	if err != nil {
		return nil
	}
	var fi windows.ByHandleFileInformation
	if windows.GetFileInformationByHandle(fh, &fi) != nil ||
		fi.FileAttributes&windows.FILE_ATTRIBUTE_DIRECTORY == 0 ||
		fi.FileAttributes&windows.FILE_ATTRIBUTE_REPARSE_POINT != 0 {
		windows.CloseHandle(fh)
		return nil // a symlink is not followed
	}
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		windows.CloseHandle(fh)
		return nil
	}
	d := &rdcwDir{h: fh, done: make(chan struct{})}
	r := &rdcwRead{ov: windows.Overlapped{HEvent: ev}, buf: make([]uint64, 8<<10)}
	if err := r.issue(d); err != nil {
		windows.CloseHandle(ev)
		windows.CloseHandle(fh)
		return nil
	}
	h.mu.Lock()
	h.dirs[dir] = d
	h.mu.Unlock()
	go h.read(dir, d, r, nil)
	return d
}

// rdcwFilter: names appearing, going and renamed, files and directories
// (every transition renames an entry; a ticket is made and removed).
const rdcwFilter = windows.FILE_NOTIFY_CHANGE_DIR_NAME | windows.FILE_NOTIFY_CHANGE_FILE_NAME

// rdcwRead is one watch's overlapped read.
type rdcwRead struct {
	ov  windows.Overlapped
	buf []uint64 // 64 KiB, DWORD-aligned as the call needs
}

// issue asks for the next changes; the reader waits for them.
func (r *rdcwRead) issue(d *rdcwDir) error {
	err := windows.ReadDirectoryChanges(d.h, (*byte)(unsafe.Pointer(&r.buf[0])), uint32(len(r.buf)*8), false, rdcwFilter, nil, &r.ov, 0)
	if err == windows.ERROR_IO_PENDING {
		return nil
	}
	return err
}

// read is the reader of d, the watch of dir: with open, the only code
// that reads from or closes its handle. Each read is overlapped and
// waited for, so that stop can cancel it (CancelIoEx); the first was
// issued by open, so that no change made after the watch was set is
// missed.
func (h *rdcwHub) read(dir string, d *rdcwDir, r *rdcwRead, err error) {
	defer close(d.done)
	defer func() {
		d.mu.Lock()
		d.closed = true
		windows.CloseHandle(d.h)
		windows.CloseHandle(r.ov.HEvent)
		d.mu.Unlock()
	}()
	for !d.stopped.Load() {
		var n uint32
		if err == nil {
			err = windows.GetOverlappedResult(d.h, &r.ov, &n, true)
		}
		if d.stopped.Load() {
			return
		}
		switch {
		case err == nil && n == 0, errors.Is(err, windows.ERROR_NOTIFY_ENUM_DIR):
			h.tell(dir, false) // more changes than the buffer held: look again
		case err != nil:
			// The directory went (a delete-pending one answers "Access is
			// denied"), or its volume did: its waits watch anew.
			h.gone(dir, d)
			return
		default:
			h.events(dir, unsafe.Slice((*byte)(unsafe.Pointer(&r.buf[0])), n))
		}
		err = r.issue(d)
	}
}

// gone ends d, the watch of dir, as the directory went.
func (h *rdcwHub) gone(dir string, d *rdcwDir) {
	h.mu.Lock()
	if h.dirs[dir] == d {
		delete(h.dirs, dir)
	}
	h.mu.Unlock()
	h.tell(dir, true)
}

// events hands out one buffer of FILE_NOTIFY_INFORMATION records of dir.
func (h *rdcwHub) events(dir string, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for off := 0; off+12 <= len(b); {
		next := *(*uint32)(unsafe.Pointer(&b[off]))
		action := *(*uint32)(unsafe.Pointer(&b[off+4]))
		size := int(*(*uint32)(unsafe.Pointer(&b[off+8])))
		if off+12+size > len(b) {
			return
		}
		name := windows.UTF16ToString(unsafe.Slice((*uint16)(unsafe.Pointer(&b[off+12])), size/2))
		full := filepath.Join(dir, name)
		// A watched path removed or moved away (a ticket): its
		// subscribers watch anew.
		if action == windows.FILE_ACTION_REMOVED || action == windows.FILE_ACTION_RENAMED_OLD_NAME {
			if subs, ok := h.paths[full]; ok {
				delete(h.paths, full)
				for _, s := range subs {
					s.notify("", true)
				}
			}
		}
		// A change inside the watched directory.
		if subs, ok := h.paths[dir]; ok && filepath.Dir(full) == dir {
			hint := ""
			if action == windows.FILE_ACTION_ADDED || action == windows.FILE_ACTION_RENAMED_NEW_NAME {
				hint = name
			}
			for _, s := range subs {
				s.notify(hint, false)
			}
		}
		if next == 0 {
			return
		}
		off += int(next)
	}
}

// tell wakes every subscriber watching through dir: events were lost
// (gone false: look again), or the watch ended (gone: watch anew, and
// the subscriptions of paths watched through it end).
func (h *rdcwHub) tell(dir string, gone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, subs := range h.paths {
		if dirOf(p) != dir {
			continue
		}
		if gone {
			delete(h.paths, p)
		}
		for _, s := range subs {
			s.notify("", true)
		}
	}
}

// release ends one subscription's use of d, the watch of dir, and the
// watch with the last one. Called with h.op held.
func (h *rdcwHub) release(dir string, d *rdcwDir) {
	if d.n--; d.n > 0 {
		return
	}
	h.mu.Lock()
	if h.dirs[dir] == d {
		delete(h.dirs, dir)
	}
	h.mu.Unlock()
	d.stop()
}

// stop ends the reader and waits until it has closed the handle (a
// second at most: a reader stuck in a hung network call is left to end
// when it returns). CancelIoEx ends a read under way; the reader checks
// stopped before each read, so it is asked again until it has gone.
func (d *rdcwDir) stop() {
	if d.stopped.Swap(true) {
		select {
		case <-d.done:
		case <-time.After(time.Second):
		}
		return
	}
	for range 100 {
		d.mu.Lock()
		if !d.closed {
			windows.CancelIoEx(d.h, nil)
		}
		d.mu.Unlock()
		select {
		case <-d.done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// drop ends the watch of the directory path and tells its subscribers
// (they watch anew at their next turn): before this process removes
// path, or when a call on it was refused, so that our own handle does not
// keep a removed directory's name alive. The subscriptions stay counted
// until their owners cancel them.
func (h *rdcwHub) drop(path string) {
	h.op.Lock()
	defer h.op.Unlock()
	h.mu.Lock()
	d := h.dirs[path]
	if d != nil {
		delete(h.dirs, path)
	}
	h.mu.Unlock()
	if d == nil {
		return
	}
	d.stop()
	h.tell(path, true)
}

// remove takes s off path's subscribers. Called with h.mu held.
func (h *rdcwHub) remove(path string, s *Sub) {
	subs := h.paths[path]
	for i, x := range subs {
		if x == s {
			subs = append(subs[:i:i], subs[i+1:]...)
			break
		}
	}
	if len(subs) == 0 {
		delete(h.paths, path)
	} else {
		h.paths[path] = subs
	}
}

func (h *rdcwHub) overflow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.paths {
		for _, s := range subs {
			s.notify("", true)
		}
	}
}

func (h *rdcwHub) subscribers(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.paths[path])
}
