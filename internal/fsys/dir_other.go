//go:build !unix

package fsys

import (
	"io/fs"
	"os"
)

// readNames lists the directory at path, refusing a symlink or junction
// there (without O_NOFOLLOW for directories, the check and the open are two
// steps).
func readNames(path string) ([]string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&(fs.ModeSymlink|fs.ModeIrregular) != 0 || !fi.IsDir() {
		return nil, &os.PathError{Op: "open", Path: path, Err: errNotDirectory}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeDir removes the empty directory at path.
func removeDir(path string) error { return os.Remove(path) }

// isRealDir reports whether path is a directory, not following a symlink
// (or junction) there.
func isRealDir(path string) (bool, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	return fi.IsDir() && fi.Mode()&os.ModeSymlink == 0, nil
}

func owner(fs.FileInfo) (int, bool) { return 0, false }
