package lockdir

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Adopt takes an empty directory only if a listing made after its claim
// shows it empty: a caller's listing may have come from a client's cache
// (in CI, sshfs with its default 20 s caches showed a directory empty that
// held a stale entry, made without a queue, and two processes held the
// lock). With an entry there, the claim is given back and nothing is made.
func TestAdoptGivesBackItsClaimOnAnEntryItWasNotShown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	stale := HeldName(7, NewToken(), 0, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour), time.Second)
	if err := os.MkdirAll(filepath.Join(path, stale), 0o755); err != nil {
		t.Fatal(err)
	}
	held := HeldName(1, NewToken(), 0, time.Now(), time.Now(), time.Second)
	ok, err := Adopt(path, held)
	if ok || err != nil {
		t.Fatalf("Adopt of a directory holding %s = %v, %v; want false, nil", stale, ok, err)
	}
	names, _ := os.ReadDir(path)
	if len(names) != 1 || names[0].Name() != stale {
		t.Fatalf("after the refused Adopt the directory holds %v, want only %s", names, stale)
	}
	// Empty, it is adopted.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o777); err != nil {
		t.Fatal(err)
	}
	if ok, err := Adopt(empty, held); !ok || err != nil {
		t.Fatalf("Adopt of an empty directory = %v, %v", ok, err)
	}
}
