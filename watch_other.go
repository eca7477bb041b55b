//go:build !linux

package dlock

func newHub() hub { return &fsnotifyHub{} }

// openTicket and closeTicket: only inotify reports a ticket's close (see
// watch_linux.go); elsewhere a dead waiter is passed over at a poll.
func openTicket(string) int { return -1 }
func closeTicket(int)       {}
