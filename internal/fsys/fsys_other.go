//go:build !linux

package fsys

// What only Linux has: elsewhere these do nothing, and their callers take
// the portable way.

// checkAndRename does nothing here: Move takes the portable calls.
func checkAndRename(dir, from, to string, walk Walk) Renamed { return Renamed{} }

// holdOpen and closeHeld: only inotify reports a directory's close;
// elsewhere a dead waiter is passed over at a poll.
func holdOpen(string) int { return -1 }
func closeHeld(int)       {}

// inMemory: only Linux's statfs is asked. Elsewhere no filesystem is
// taken for one in memory, so Unlock always keeps its release abandonable.
func inMemory(string) bool { return false }

// maybeFUSE and mountTable: only Linux's mount table is read. Elsewhere no
// mount is known, so Unsafe refuses nothing.
func maybeFUSE(dir string) bool { return false }

func mountTable() ([]mount, error) { return nil, nil }
