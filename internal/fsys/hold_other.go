//go:build !linux

package fsys

// holdOpen and closeHeld: only inotify reports a directory's close;
// elsewhere a dead waiter is passed over at a poll.
func holdOpen(string) int { return -1 }
func closeHeld(int)       {}
