package lockdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
)

// A transition on Linux is two system calls on paths built in a buffer
// on the stack: no allocation, however often locks change hands.
func TestMoveAllocatesNothingOnLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the allocation-free statx (or open) + renameat2 path is Linux's")
	}
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	dir := t.TempDir()
	a, b := FreeName(1), HeldName(2, NewToken(), 0, time.Unix(1, 0), time.Unix(1, 0), time.Second)
	if err := os.Mkdir(filepath.Join(dir, a), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, walk := range walks {
		allocs := testing.AllocsPerRun(200, func() {
			if err := Move(dir, a, b, walk); err != nil {
				t.Fatal(err)
			}
			if err := Move(dir, b, a, walk); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("two transitions (walk %d) allocate %v times, want 0", walk, allocs)
		}
	}
}

// walks are the ways of a transition: by path after a look at dir, and
// through a descriptor of dir for a network filesystem (whose type is
// asked of the server too, with WalkOnceAsk).
var walks = []fsys.Walk{fsys.WalkEach, fsys.WalkOnce, fsys.WalkOnceAsk}

// Every way of a transition answers alike, and none
// renames anything in a directory a symlink at dir points to, nor
// follows a file there.
func TestMoveRefusesWhatIsNotTheLock(t *testing.T) {
	for _, walk := range walks {
		t.Run(fmt.Sprint("walk", walk), func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "lock")
			a, b := FreeName(1), HeldName(2, NewToken(), 0, time.Unix(1, 0), time.Unix(1, 0), time.Second)
			mkdir := func(p string) {
				t.Helper()
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			mkdir(filepath.Join(dir, a))
			if err := Move(dir, a, b, walk); err != nil {
				t.Fatalf("Move: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				t.Fatalf("after Move: %v", err)
			}
			if err := Move(dir, a, FreeName(3), walk); !errors.Is(err, ErrGone) {
				t.Fatalf("Move of a name that is gone = %v, want ErrGone", err)
			}
			if err := Move(filepath.Join(base, "missing"), a, b, walk); !errors.Is(err, ErrGone) {
				t.Fatalf("Move in a missing directory = %v, want ErrGone", err)
			}
			// (Where RENAME_NOREPLACE is refused, as through sshfs and
			// GlusterFS, rename(2) replaces an empty directory: invariant 2.)
			if fsys.CachingOf(base) == fsys.Coherent {
				mkdir(filepath.Join(dir, FreeName(2)))
				if err := Move(dir, b, FreeName(2), walk); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Move onto an existing entry = %v, want ErrCorrupt", err)
				}
			}

			// The lock directory swapped for a symlink to a directory that
			// holds the very entry: nothing there is renamed.
			if err := os.Rename(dir, dir+".orig"); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(base, "elsewhere")
			mkdir(filepath.Join(target, b))
			if err := os.Symlink(target, dir); err != nil {
				t.Skipf("no symlinks here: %v", err)
			}
			if err := Move(dir, b, FreeName(2), walk); !errors.Is(err, ErrGone) {
				t.Fatalf("Move through a symlink at the lock's path = %v, want ErrGone", err)
			}
			if _, err := os.Stat(filepath.Join(target, b)); err != nil {
				t.Fatalf("the symlink's target was changed: %v", err)
			}
			// A file there.
			os.Remove(dir)
			if err := os.WriteFile(dir, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Move(dir, b, FreeName(2), walk); !errors.Is(err, ErrGone) {
				t.Fatalf("Move with a file at the lock's path = %v, want ErrGone", err)
			}
			// A file above it: an error, not a lock that is gone. (Windows
			// answers "path not found" for a file in a path, as for a
			// missing directory: there the lock is gone as far as a look
			// can tell, and New's mkdir already said why.)
			if runtime.GOOS == "windows" {
				return
			}
			if err := Move(filepath.Join(dir, "below"), b, FreeName(2), walk); err == nil || errors.Is(err, ErrGone) {
				t.Fatalf("Move below a file = %v, want an error", err)
			}
		})
	}
}
