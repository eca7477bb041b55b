//go:build !windows

package fsys

// transientOS: elsewhere no error of the OS is a refusal that passes by
// itself (EACCES is a verdict; a busy mount is the dlock package's to
// wait out, not ours to retry).
func transientOS(error) bool { return false }

// releaseOnRefusal: elsewhere an open handle never keeps a removed name.
const releaseOnRefusal = false

func beforeRemove(string) {}
