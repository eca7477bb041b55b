//go:build !linux

package fsys

// cachingOf: a local filesystem is coherent; of a network one nothing is
// known here (the BSDs' NFS clients keep negative names for up to a
// minute, macOS's SMB client caches too).
func cachingOf(dir string) Caching {
	if isLocalFS(dir) {
		return Coherent
	}
	return Unknown
}
