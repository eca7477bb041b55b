package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

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
		if parent := filepath.Dir(userPath); parent != userPath {
			if fi, serr := os.Stat(parent); serr == nil && fi.IsDir() {
				if _, lerr := os.Lstat(userPath); errors.Is(lerr, iofs.ErrNotExist) {
					// The parent is there, yet creating in it says "no such
					// file": a filesystem (proc, sysfs) where nothing can be
					// made.
					return fmt.Sprintf("dlock: cannot create the lock %s: the filesystem of %s does not let directories be created in it; put the lock on a disk or a shared filesystem", userPath, parent)
				}
			}
		}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		what := "no space left"
		if errors.Is(err, syscall.EDQUOT) {
			what = "disk quota exceeded"
		}
		return fmt.Sprintf("dlock: cannot change the lock %s: %s on its filesystem (a lock needs a few directory entries); free some space", userPath, what)
	case errors.Is(err, iofs.ErrPermission):
		if msg := permissionHint(err, userPath); msg != "" {
			return msg
		}
	}
	msg := err.Error()
	if errors.Is(err, dlock.ErrNotLock) {
		if fi, serr := os.Stat(userPath); serr == nil && fi.Mode().IsRegular() {
			return fmt.Sprintf("dlock: %s is a file, not a lock directory (to lock a file as flock(1) does, use dlock flock %s COMMAND)", userPath, userPath)
		}
		if kind := containerKind(userPath); kind != "" {
			// Another layout of dlock's: say which, and the flag that
			// takes it, rather than what the library found inside.
			return fmt.Sprintf("dlock: %s is %s", userPath, kind)
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
		case strings.HasPrefix(name, "free.") || strings.HasPrefix(name, "held."):
			return "a plain lock: take it without -s, -x or -slots"
		}
	}
	return ""
}

// explainRead is explain for commands that only look at a lock (status):
// a permission error names the directory that does not let the user in,
// not one dlock would create the lock in.
func explainRead(err error, userPath string) string {
	if !errors.Is(err, iofs.ErrPermission) {
		return explain(err, userPath)
	}
	abs, aerr := filepath.Abs(userPath)
	if aerr != nil {
		return explain(err, userPath)
	}
	// The blocker: the lock itself if it can be looked at, else the
	// deepest ancestor that can.
	dir, need := abs, "list it (read and search permission)"
	if _, serr := os.Stat(abs); serr != nil {
		need = "reach what is inside (search permission)"
		for dir = filepath.Dir(abs); ; dir = filepath.Dir(dir) {
			if _, serr := os.Stat(dir + string(filepath.Separator) + "."); serr == nil || dir == filepath.Dir(dir) {
				break
			}
		}
		// dir can be looked at; the one below it on the way is the blocker.
		rel, _ := filepath.Rel(dir, abs)
		if first := strings.Split(rel, string(filepath.Separator))[0]; first != "." && first != "" {
			dir = filepath.Join(dir, first)
		}
	}
	fi, serr := os.Stat(dir)
	if serr != nil {
		return explain(err, userPath)
	}
	return fmt.Sprintf("dlock: permission denied reading the lock %s: %s is mode %04o%s, which does not let you %s", userPath, dir, uint32(fi.Mode().Perm()), describeOwner(fi), need)
}
