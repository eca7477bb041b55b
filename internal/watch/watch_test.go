package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A wait watching two directories, one not made yet, keeps the watch of
// the other while it tries again for the missing one: an event it has
// heard (a release it waits for) is not thrown away. Dropping every
// watch to subscribe afresh lost it, and a writer of an RWLock waiting
// for its last reader slept forever (TestRWLock's flake under load).
func TestWatchKeepsWatchedPathsWhileOthersAreMissing(t *testing.T) {
	dir := t.TempDir()
	here, later := filepath.Join(dir, "here"), filepath.Join(dir, "later")
	if err := os.Mkdir(here, 0o755); err != nil {
		t.Fatal(err)
	}
	var w Sub
	defer w.Close()
	paths := []string{here, later}
	if w.Set(paths) {
		t.Fatal("a missing directory counted as watched")
	}
	if err := os.Mkdir(filepath.Join(here, "free.1"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w.Events(), "the event of the watched directory")
	w.notify("", false) // (put the signal back, as if not yet taken)
	if all, added := w.Update(paths); all || added {
		t.Fatalf("update with the directory still missing = %v, %v", all, added)
	}
	select {
	case <-w.Events():
	default:
		t.Fatal("trying again for the missing directory threw away what the watched one said")
	}
	if err := os.Mkdir(later, 0o755); err != nil {
		t.Fatal(err)
	}
	if all, added := w.Update(paths); !all || !added {
		t.Fatalf("update once both exist = %v, %v; want both watched, one newly", all, added)
	}
	if err := os.Mkdir(filepath.Join(here, "free.2"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w.Events(), "an event of the directory watched all along")
}

// waitFor waits for c, or fails the test after a minute.
func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}
