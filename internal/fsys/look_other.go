//go:build !unix

package fsys

import "path/filepath"

// lookFresh: no close-to-open revalidation is known here; a look is a
// look.
func lookFresh(dir, name string) (bool, error) { return isRealDir(filepath.Join(dir, name)) }
