package fsys

// Under Wine (scripts/wine.sh) the tests run as Windows programs; this
// import lets a build with -tags wine make t.TempDir's cleanup work there
// (internal/wine/removeall_wine.go).
import _ "github.com/lockdir/dlock/internal/wine"
