package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lockdir/dlock"
)

// explain turns an error of the library about the lock the user named
// userPath into one line for people: it names the directory the user
// gave (not an internal staging path), says which directory lacks what
// permission and what would work, and drops a sentinel's text where the
// message already says it.
func explain(err error, userPath string) string {
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		if missing := firstMissing(userPath); missing != "" {
			parent := filepath.Dir(userPath)
			if missing == parent {
				return fmt.Sprintf("dlock: cannot create the lock %s: its parent directory %s does not exist (dlock creates only the lock directory itself)", userPath, parent)
			}
			return fmt.Sprintf("dlock: cannot create the lock %s: its parent directory %s does not exist (the first missing directory is %s; dlock creates only the lock directory itself)", userPath, parent, missing)
		}
	case errors.Is(err, iofs.ErrPermission):
		if msg := permissionHint(err, userPath); msg != "" {
			return msg
		}
	}
	msg := err.Error()
	if errors.Is(err, dlock.ErrNotLock) {
		switch kind := containerKind(userPath); {
		case kind != "":
			msg += " (it is " + kind + ")"
		}
	}
	for _, s := range []struct {
		sentinel error
		says     string
	}{
		{dlock.ErrNotLock, "not a lock directory"},
		{dlock.ErrLost, "was lost"},
	} {
		tail := ": " + s.sentinel.Error()
		if i := strings.LastIndex(msg, tail); errors.Is(err, s.sentinel) && i >= 0 && strings.Contains(msg[:i], s.says) {
			msg = msg[:i] + msg[i+len(tail):]
		}
	}
	return msg
}

// firstMissing is the outermost missing directory among the ancestors of
// path, or "" if its parent exists.
func firstMissing(path string) string {
	missing := ""
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); err == nil {
			return missing
		} else if !errors.Is(err, iofs.ErrNotExist) {
			return missing
		}
		missing = dir
		if next := filepath.Dir(dir); next == dir {
			return missing
		}
	}
}

// permissionHint says which directory refused the operation and what
// mode would work.
func permissionHint(err error, userPath string) string {
	abs, aerr := filepath.Abs(userPath)
	if aerr != nil {
		return ""
	}
	// The directory that refused: the lock directory (or one inside it)
	// if it exists, else its parent, where dlock creates it.
	dir := filepath.Dir(abs)
	var pe *iofs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &le):
		dir = filepath.Dir(le.New)
	case errors.As(err, &pe):
		dir = filepath.Dir(pe.Path)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() && !strings.HasPrefix(dir, abs) {
		dir = abs
	}
	fi, serr := os.Stat(dir)
	if serr != nil {
		return ""
	}
	who := describeOwner(fi)
	if dir == filepath.Dir(abs) {
		return fmt.Sprintf("dlock: permission denied creating the lock %s: creating it needs write permission on %s, which is mode %04o%s; "+
			"create the lock once as a user who can, with -mode 0777 (or 0775 and a group all its users share), or put it in a directory you can write to",
			userPath, dir, uint32(fi.Mode().Perm()), who)
	}
	return fmt.Sprintf("dlock: permission denied on the lock %s: every user of a lock needs write permission on %s, which is mode %04o%s; "+
		"have its owner run chmod 0777 %s (or 0775 and a group all its users share), or create locks with -mode 0777",
		userPath, dir, uint32(fi.Mode().Perm()), who, dir)
}

// containerKind names what a directory that is not a plain lock is, when
// it is another kind of dlock lock, and the flag that takes it.
func containerKind(path string) string {
	names, err := os.ReadDir(path)
	if err != nil {
		return ""
	}
	for _, n := range names {
		switch name := n.Name(); {
		case strings.HasPrefix(name, "rwlock."):
			return "a reader/writer lock: take it with -s or -x"
		case strings.HasPrefix(name, "size."):
			return "a semaphore: take it with -slots " + strings.TrimPrefix(name, "size.")
		}
	}
	return ""
}
