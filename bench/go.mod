module github.com/lockdir/dlock/bench

go 1.26.0

require (
	github.com/fsnotify/fsnotify v1.10.1
	github.com/gofrs/flock v0.13.2
	github.com/lockdir/dlock v0.0.0
	golang.org/x/sys v0.49.0
)

require github.com/benbjohnson/clock v1.3.5 // indirect

replace github.com/lockdir/dlock => ../
