package fsys

import (
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// isLocalFS: a lock on a UNC path (\\server\share\..., also in its long
// \\?\UNC\ form) is on a network share, and so is one on a drive letter
// mapped to a share (GetDriveType says DRIVE_REMOTE): there a watch
// (ReadDirectoryChangesW, which SMB forwards as CHANGE_NOTIFY) hears what
// the server chooses to tell, not every change other clients make, so
// waiters poll. A fixed, removable or RAM disk is local.
func isLocalFS(dir string) bool {
	root, unc := volumeRoot(dir)
	if unc || root == "" {
		return false
	}
	switch driveType(root) {
	case windows.DRIVE_FIXED, windows.DRIVE_REMOVABLE, windows.DRIVE_RAMDISK:
		return true
	}
	return false
}

// volumeRoot is the root of dir's volume ("C:\"), and whether dir is on
// a UNC path instead. The long forms \\?\C:\ and \\?\UNC\ count as the
// short ones.
func volumeRoot(dir string) (root string, unc bool) {
	switch {
	case strings.HasPrefix(dir, `\\?\UNC\`):
		return "", true
	case strings.HasPrefix(dir, `\\?\`):
		dir = dir[4:]
	}
	vol := filepath.VolumeName(dir)
	if strings.HasPrefix(vol, `\\`) {
		return "", true
	}
	if len(vol) != 2 || vol[1] != ':' {
		return "", false
	}
	return vol + `\`, false
}

// driveType is GetDriveType of a drive's root; tests replace it to play a
// mapped network drive.
var driveType = func(root string) uint32 {
	p, err := windows.UTF16PtrFromString(root)
	if err != nil {
		return windows.DRIVE_UNKNOWN
	}
	return windows.GetDriveType(p)
}
