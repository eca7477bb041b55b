//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package fsys

import "path/filepath"

// isLocalFS: on Windows a UNC path (\\server\share) is remote and a drive
// letter is taken as local; elsewhere nothing is known, so waiters poll.
func isLocalFS(dir string) bool {
	return filepath.VolumeName(dir) != "" && len(filepath.VolumeName(dir)) == 2
}
