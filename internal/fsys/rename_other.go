//go:build !unix && !windows

package fsys

import "os"

// renameEntry renames one state entry.
func renameEntry(from, to string) error { return os.Rename(from, to) }

// renameExclusive is renameEntry: nothing better is known here.
func renameExclusive(from, to string) error { return os.Rename(from, to) }
