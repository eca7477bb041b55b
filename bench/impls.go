package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
	"github.com/lockdir/dlock"
	"golang.org/x/sys/unix"
)

// Implementation names, as they appear in the -json output.
const (
	implDlock     = "dlock"
	implDlockPoll = "dlock-poll" // dlock with watching off: polling only
	// dlock polling every 5 ms (WithPollInterval): what a waiter costs a
	// server when it hands off as fast as a peer polling every 1 ms.
	implDlock5     = "dlock-5ms"
	implFlock      = "flock"    // gofrs/flock, reopening the file as it does
	implFlockFD    = "flock-fd" // flock(2) on a file descriptor kept open
	implFloor      = "floor"    // two renames of an entry: what the protocol cannot avoid
	implFloorMkdir = "floor-mkdir"
	// The system calls a dlock Lock+Unlock makes on Linux: per transition
	// a statx of the lock directory's type (the symlink check) and a
	// RENAME_NOREPLACE of an entry with a name as long as dlock's.
	implFloorChecked = "floor-checked"
	implEtcd         = "etcd" // etcdlock on an etcd at 127.0.0.1 (uncontended and hand-off only)
	// The least a rename-and-inotify hand-off costs in Go (floorwatch.go);
	// hand-off trials only.
	implFloorWatch = "floor-watch"
)

// locker is what the contended benchmarks drive.
type locker interface {
	Lock(ctx context.Context) error
	Unlock() error
}

// contendedImpls are the implementations that can be run across processes.
// etcd is added to these for the hand-off trials only.
func contendedImpls() []string {
	return []string{implDlock, implFlock, implDlockPoll}
}

// newLocker makes impl's lock on path; etcd is etcd's client URL, for the
// etcd implementation. A locker that is an io.Closer is closed after use.
func newLocker(impl, path, etcd string) (locker, error) {
	switch impl {
	case implEtcd:
		return newEtcdLocker(etcd, path)
	case implDlock:
		return dlock.New(path)
	case implDlockPoll:
		return dlock.New(path, dlock.WithWatch(false))
	case implDlock5:
		return dlock.New(path, dlock.WithPollInterval(5*time.Millisecond))
	case implFlock:
		return flockLocker{flock.New(path)}, nil
	case implFloorWatch:
		return newFloorWatch(path)
	case implDlockRun:
		return newRunLocker(path, 0)
	}
	if isForeign(impl) {
		return startPeer(impl, path, 0)
	}
	return nil, fmt.Errorf("no contended implementation %q", impl)
}

type flockLocker struct{ f *flock.Flock }

func (l flockLocker) Lock(context.Context) error { return l.f.Lock() }
func (l flockLocker) Unlock() error              { return l.f.Unlock() }

// op is one uncontended acquire+release, with its setup and teardown.
type op struct {
	impl  string
	run   func() error
	close func()
	note  string // how this filesystem made the op differ from its description, or ""
	// batch, if set, runs n ops in one go and says how long they took
	// (peers time their own loop, without the protocol's round trips);
	// ctx bounds it (a peer is killed then).
	batch func(ctx context.Context, n int) (time.Duration, error)
	// abort, if set, ends an op stuck in run (a peer: kills it).
	abort func()
}

// newOp prepares the uncontended operation of impl on a fresh path in dir
// (for etcd, a key named after it in the etcd at client URL etcd).
func newOp(impl, dir, etcd string) (*op, error) {
	path := filepath.Join(dir, "uncontended-"+impl)
	o := &op{impl: impl, close: func() {}}
	switch impl {
	case implEtcd:
		l, err := newEtcdLocker(etcd, path)
		if err != nil {
			return nil, err
		}
		o.close = func() { l.Close() }
		ctx := context.Background()
		o.run = func() error {
			if err := l.Lock(ctx); err != nil {
				return err
			}
			return l.Unlock()
		}
	case implDlock, implDlockPoll:
		l, err := dlock.New(path, dlock.WithWatch(impl == implDlock))
		if err != nil {
			return nil, err
		}
		ctx := context.Background()
		o.run = func() error {
			if err := l.Lock(ctx); err != nil {
				return err
			}
			return l.Unlock()
		}
	case implFlock:
		f := flock.New(path)
		o.run = func() error {
			ok, err := f.TryLock()
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("flock %s: busy", path)
			}
			return f.Unlock()
		}
	case implFlockFD:
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		o.close = func() { unix.Close(fd) }
		o.run = func() error {
			if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
				return err
			}
			return unix.Flock(fd, unix.LOCK_UN)
		}
	case implFloor:
		if err := os.Mkdir(path, 0o755); err != nil {
			return nil, err
		}
		a, b := filepath.Join(path, "a"), filepath.Join(path, "b")
		if err := os.Mkdir(a, 0o755); err != nil {
			return nil, err
		}
		o.run = func() error {
			if err := unix.Rename(a, b); err != nil {
				return err
			}
			return unix.Rename(b, a)
		}
	case implFloorChecked:
		if err := os.Mkdir(path, 0o755); err != nil {
			return nil, err
		}
		// A held entry's name is about 140 bytes; a free one about 25.
		a := filepath.Join(path, "free.1795459126525582791")
		b := filepath.Join(path, "held.1795459126525582792.75f4eab35ad8a1e358207a64ab45910e.0.1795459128779533503.1795459128779533503.400000000.28556.1067041.49b7aff089298f41.vm")
		if err := os.Mkdir(a, 0o755); err != nil {
			return nil, err
		}
		// Where RENAME_NOREPLACE is refused (sshfs, some NFS servers) dlock
		// falls back to plain rename(2), and so does this floor.
		rename := func(from, to string) error {
			return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
		}
		if err := rename(a, b); errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP) {
			rename = unix.Rename
			o.note = "RENAME_NOREPLACE refused here: plain rename(2), as dlock does"
		} else if err != nil {
			return nil, err
		} else if err := unix.Rename(b, a); err != nil {
			return nil, err
		}
		step := func(from, to string) error {
			var stx unix.Statx_t
			if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx); err != nil {
				return err
			}
			return rename(from, to)
		}
		o.run = func() error {
			if err := step(a, b); err != nil {
				return err
			}
			return step(b, a)
		}
	case implFloorMkdir:
		o.run = func() error {
			if err := unix.Mkdir(path, 0o755); err != nil {
				return err
			}
			return unix.Rmdir(path)
		}
	case implDlockRun:
		bin := os.Getenv(dlockBinEnv)
		if bin == "" {
			return nil, fmt.Errorf("dlock-run: %s is not set", dlockBinEnv)
		}
		o.run = func() error {
			out, err := exec.Command(bin, "run", path, "--", "true").CombinedOutput()
			if err != nil {
				return fmt.Errorf("dlock run: %v: %s", err, out)
			}
			return nil
		}
	default:
		if !isForeign(impl) {
			return nil, fmt.Errorf("unknown implementation %q", impl)
		}
		p, err := startPeer(impl, path, 0)
		if err != nil {
			return nil, err
		}
		o.close = func() { p.Close() }
		o.abort = p.kill
		o.batch = p.bench
		o.run = func() error { _, err := p.bench(context.Background(), 1); return err }
		if impl == implPipe { // the protocol's own cost: two round trips
			o.batch = nil
			o.run = func() error {
				if err := p.Lock(context.Background()); err != nil {
					return err
				}
				return p.Unlock()
			}
		}
	}
	return o, nil
}
