package fsys

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// renameExclusive is MoveFileEx without MOVEFILE_REPLACE_EXISTING: an
// existing target, directory or file, is ERROR_ALREADY_EXISTS (fs.ErrExist).
// os.Rename asks for the replace: it fails on a directory target too, but
// with "Access is denied", which is also what a delete-pending name or an
// entry another program has open answers (refusals that pass): the two
// must not be confused, or a creator that lost the race to make a lock
// would take the loss for a refusal and retry it.
func renameExclusive(from, to string) error {
	f, err := windows.UTF16PtrFromString(LongPath(from))
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	t, err := windows.UTF16PtrFromString(LongPath(to))
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	if err := windows.MoveFileEx(f, t, 0); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// renameEntry is renameExclusive: Windows has the exclusive rename.
func renameEntry(from, to string) error { return renameExclusive(from, to) }

// LongPath gives an absolute path beyond MAX_PATH its \\?\ form (\\?\UNC\
// for a share), which the Windows calls made here directly need unless
// long paths are enabled (the os package does the same for its own).
func LongPath(p string) string {
	const short = 248 // CreateDirectory's limit, the lowest
	switch {
	case len(p) < short, strings.HasPrefix(p, `\\?\`), !filepath.IsAbs(p):
		return p
	case strings.HasPrefix(p, `\\`):
		return `\\?\UNC\` + p[2:]
	}
	return `\\?\` + filepath.Clean(p)
}
