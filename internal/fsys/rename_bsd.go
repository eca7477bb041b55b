//go:build aix || dragonfly || freebsd || hurd || illumos || netbsd || openbsd || solaris

package fsys

// renameExclusive is not available here: callers fall back to rename(2),
// which never replaces a non-empty directory.
func renameExclusive(from, to string) error { return ErrNoExclusive }
