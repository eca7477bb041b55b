package fsys

// Caching is how this host's client of a filesystem may answer a look at a
// directory's entries (a stat, a listing): from the filesystem itself, or
// from caches of its own. A look answered from a cache saw nothing: a name
// another host renamed away may still be "there" for as long as the cache
// keeps it (the Linux NFS client's dentry cache, GlusterFS's one-second
// FUSE entry timeout, sshfs's 20-second caches).
type Caching int

const (
	// Coherent: a local filesystem. A look sees the latest state, and
	// a watch hears every change.
	Coherent Caching = iota
	// CloseToOpen: a network filesystem whose client revalidates a
	// directory when it is opened (NFS: close-to-open consistency), and
	// with it the names cached under it. A look made through a fresh
	// open of the directory (LookFresh) asks the server, in one round
	// trip (a GETATTR) when nothing changed.
	CloseToOpen
	// Opaque: a network or FUSE filesystem whose client may answer any
	// look from a cache that opening the directory does not refresh
	// (FUSE: entry and attribute timeouts, and the daemon's own caches,
	// as sshfs's). Only a change (a rename) surely reaches the server.
	Opaque
	// Unknown: a network filesystem of a kind not known here (another
	// OS's client). Both: open the directory first, and take no look
	// for the server's answer.
	Unknown
)

// CachingOf says how the client of dir's filesystem may answer a look
// (Unknown where the filesystem cannot be asked).
func CachingOf(dir string) Caching { return cachingOf(dir) }

// OpenFirst reports whether opening the directory makes the client
// revalidate the names in it (see LookFresh).
func (c Caching) OpenFirst() bool { return c == CloseToOpen || c == Unknown }

// MayCache reports whether even a fresh look may be answered from a
// cache: only a rename is sure to ask the server.
func (c Caching) MayCache() bool { return c == Opaque || c == Unknown }

// String names the kind, for logs and tests.
func (c Caching) String() string {
	switch c {
	case Coherent:
		return "coherent"
	case CloseToOpen:
		return "close-to-open"
	case Opaque:
		return "opaque"
	}
	return "unknown"
}

// LookFresh reports whether dir/name is a directory (not following a
// symlink there), as a look the client of a CloseToOpen filesystem must
// ask the server for: it opens dir (refusing a symlink at dir) and looks
// at name from there, so the client revalidates dir first. Where opening
// revalidates nothing it costs one open more than IsRealDir(dir/name).
func LookFresh(dir, name string) (bool, error) { return lookFresh(dir, name) }
