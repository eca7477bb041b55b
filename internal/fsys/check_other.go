//go:build !linux

package fsys

// checkAndRename does nothing here: move takes the portable calls.
func checkAndRename(dir, from, to string) (isDir bool, statErr, err error, done bool) {
	return false, nil, nil, false
}
