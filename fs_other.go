//go:build !unix && !windows

package dlock

import "os"

func readNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

func renameEntry(from, to string) error     { return os.Rename(from, to) }
func renameExclusive(from, to string) error { return os.Rename(from, to) }

// isRealDir reports whether path is a directory, not following a symlink
// (or junction) there.
func isRealDir(path string) (bool, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	return fi.IsDir() && fi.Mode()&os.ModeSymlink == 0, nil
}
