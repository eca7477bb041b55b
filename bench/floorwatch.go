package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// floorWatch is the least a Go lock built like dlock's hand-off can do: a
// directory whose one entry is renamed from "free" to a name of the
// holder's and back, and waiters that read their own inotify descriptor
// (through the runtime's poller, as dlock does) and retry the rename on
// every event. No queue, no symlink check, no owner record, no staleness,
// no listing: it is the hand-off's floor (inotify event, a thread woken
// in the waiter's process, a rename), not a lock to use.
type floorWatch struct {
	free, held string
	f          *os.File
	buf        []byte
}

func newFloorWatch(path string) (*floorWatch, error) {
	if err := os.Mkdir(path, 0o755); err == nil {
		if err := os.Mkdir(filepath.Join(path, "free"), 0o755); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MOVED_TO|unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify_add_watch %s: %w", path, err)
	}
	return &floorWatch{
		free: filepath.Join(path, "free"),
		held: filepath.Join(path, fmt.Sprintf("held-%d", os.Getpid())),
		f:    os.NewFile(uintptr(fd), "inotify"),
		buf:  make([]byte, 64<<10),
	}, nil
}

// Lock renames free to our name, or waits for the next event and tries
// again. (Events of our own renames wake it once for nothing.)
func (l *floorWatch) Lock(context.Context) error {
	for {
		err := unix.Rename(l.free, l.held)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		if _, err := l.f.Read(l.buf); err != nil {
			return err
		}
	}
}

func (l *floorWatch) Unlock() error { return unix.Rename(l.held, l.free) }

func (l *floorWatch) Close() error { return l.f.Close() }
