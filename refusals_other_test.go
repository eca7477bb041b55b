//go:build !windows

package dlock

import (
	"fmt"

	"github.com/lockdir/dlock/internal/fsys"
)

// refusals stand for Windows' answers for an entry or a directory that
// another program has open (refusals_windows_test.go has the real ones):
// elsewhere no OS error means that, so the stand-ins match
// fsys.ErrTransient, as fsys's classification of the real ones does.
var refusals = []error{
	fmt.Errorf("The process cannot access the file because it is being used by another process: %w", fsys.ErrTransient),
	fmt.Errorf("Access is denied: %w", fsys.ErrTransient),
	fmt.Errorf("delete pending: %w", fsys.ErrTransient),
}
