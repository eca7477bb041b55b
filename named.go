package dlock

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/lockdir/dlock/internal/fsys"
)

// Named returns a lock for a name rather than a path: the lock directory
// is NameToFile(name) in the default lock directory (see DefaultDir), or
// in the directory WithDir gives. Any string is a valid name, and distinct
// names are distinct locks.
func Named(name string, opts ...Option) (*Lock, error) {
	cfg, err := newConfig("named lock", name, opts, allowDir)
	if err != nil {
		return nil, err
	}
	dir := cfg.dir
	if dir == "" {
		d, err := DefaultDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	return newLock(filepath.Join(dir, NameToFile(name)), cfg)
}

// DefaultDir returns the per-user directory for named locks, creating it
// if needed:
//
//   - $XDG_RUNTIME_DIR/dlock when XDG_RUNTIME_DIR is set (Linux sessions);
//   - otherwise dlock-UID in the temporary directory, created 0700 and
//     checked to be a directory (not a symlink) owned by this user and
//     writable by nobody else, since a shared /tmp lets anyone plant a
//     name first;
//   - on macOS, $TMPDIR is already per user, and on Windows %TEMP% is.
//
// The locks there exclude processes of this user on this host. For locks
// between users or hosts, use WithDir or New with a path of your own.
func DefaultDir() (string, error) {
	base, name := os.TempDir(), "dlock-"+userTag()
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" && filepath.IsAbs(xdg) {
		base, name = xdg, "dlock"
	} else if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		name = "dlock"
	}
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("dlock: creating the lock directory %s: %w", dir, err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// NameToFile maps any string to one safe file name, the same on every
// host and OS, such that distinct names give distinct file names:
//
//   - bytes other than a-z 0-9 - _ . are written %XX (lowercase hex), as
//     is a final dot (Windows drops trailing dots) and '%' itself, so
//     upper and lower case stay distinct on case-insensitive filesystems;
//   - the result starts with "n-", so no name is "", ".", "..", a hidden
//     file or a Windows device name such as CON;
//   - a result longer than 160 bytes keeps its first 80 bytes (never
//     cutting an escape), then "~" and the SHA-256 of the whole name in
//     hex: "~" never appears otherwise, so long and short names cannot
//     meet, and long names differ unless SHA-256 collides.
func NameToFile(name string) string {
	const hexdigits = "0123456789abcdef"
	var b strings.Builder
	b.WriteString("n-")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' && i < len(name)-1 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	s := b.String()
	if len(s) <= 160 {
		return s
	}
	cut := 80
	for i := cut - 2; i < cut; i++ {
		if s[i] == '%' {
			cut = i
		}
	}
	sum := sha256.Sum256([]byte(name))
	return s[:cut] + "~" + hex.EncodeToString(sum[:])
}

// userTag names this user in the default directory's name, where the
// temporary directory is shared by every user: the uid, where the OS has
// one.
func userTag() string {
	if uid := os.Getuid(); uid >= 0 {
		return strconv.Itoa(uid)
	}
	return "user"
}

// checkPrivateDir verifies that dir is a real directory and, where the OS
// has owners and modes (Unix), that it is this user's and that nobody
// else can write it. (On Windows the temporary directory is per user; its
// ACLs are not inspected here.)
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("dlock: lock directory %s: %w", dir, err)
	}
	if !fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("dlock: lock directory %s is not a directory (a symlink or file planted there?): %w", dir, ErrNotLock)
	}
	uid, ok := fsys.Owner(fi)
	switch {
	case !ok:
		return nil
	case uid != os.Getuid():
		return fmt.Errorf("dlock: lock directory %s is owned by uid %d, not by this user (%d): refusing it", dir, uid, os.Getuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("dlock: lock directory %s is writable by others (mode %v): refusing it", dir, fi.Mode().Perm())
	}
	return nil
}
