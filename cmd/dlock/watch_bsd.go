//go:build unix && !linux

package main

import "time"

// watchProcess returns a channel closed when process pid exits, by
// polling every 250ms (these systems have no pidfd; kqueue's EVFILT_PROC
// is not used yet).
func watchProcess(pid int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for processAlive(pid) {
			time.Sleep(250 * time.Millisecond)
		}
		close(done)
	}()
	return done
}
