module github.com/lockdir/dlock

go 1.25.0

require (
	github.com/benbjohnson/clock v1.3.5
	github.com/fsnotify/fsnotify v1.10.1
	golang.org/x/sys v0.46.0
)
