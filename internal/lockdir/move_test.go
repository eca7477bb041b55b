package lockdir

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// A transition on Linux is two system calls on paths built in a buffer
// on the stack: no allocation, however often locks change hands.
func TestMoveAllocatesNothingOnLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the allocation-free statx + renameat2 path is Linux's")
	}
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	dir := t.TempDir()
	a, b := FreeName(1), HeldName(2, NewToken(), 0, time.Unix(1, 0), time.Unix(1, 0), time.Second)
	if err := os.Mkdir(filepath.Join(dir, a), 0o755); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if err := Move(dir, a, b); err != nil {
			t.Fatal(err)
		}
		if err := Move(dir, b, a); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("two transitions allocate %v times, want 0", allocs)
	}
}
