//go:build !linux && !windows

package watch

// backends: fsnotify alone.
var backends = []string{"fsnotify"}

var newInotifyHub func() hub
