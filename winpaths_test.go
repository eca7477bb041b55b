package dlock

// Names and paths that Windows treats in its own ways: reserved device
// names (CON, NUL, COM1...), trailing dots and spaces (which Windows
// drops), characters it forbids, and paths beyond MAX_PATH. These run on
// every OS; under Wine (scripts/wine.sh) they run through Windows' path
// rules.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/watch"
)

// windowsSafe reports why a file name would be taken otherwise by
// Windows, or "".
func windowsSafe(name string) string {
	if strings.ContainsAny(name, `<>:"/\|?*`) {
		return "a forbidden character"
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return "a trailing dot or space, which Windows drops"
	}
	base, _, _ := strings.Cut(strings.ToUpper(name), ".")
	switch strings.TrimRight(base, " ") {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
		"COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
		"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
		return "a reserved device name"
	}
	return ""
}

// Named locks whose names are Windows' reserved device names, end in
// dots or spaces, or hold forbidden characters, each get a distinct file
// name that Windows takes as it is, and work as locks.
func TestNamedWindowsReservedNames(t *testing.T) {
	dir := t.TempDir()
	names := []string{"CON", "con", "NUL", "nul.txt", "AUX", "PRN", "COM1", "LPT9", "CONIN$",
		"a.", "a..", "a ", "a. .", " lead", "x:y", "a/b", `a\b`, "a*?", "<>|\"", "a", "A"}
	files := map[string]string{}
	for _, name := range names {
		f := NameToFile(name)
		if why := windowsSafe(f); why != "" {
			t.Errorf("NameToFile(%q) = %q: %s", name, f, why)
		}
		if other, ok := files[strings.ToLower(f)]; ok {
			t.Errorf("NameToFile(%q) and NameToFile(%q) meet on a case-insensitive filesystem: %q", name, other, f)
		}
		files[strings.ToLower(f)] = name
		l, err := Named(name, WithDir(dir), WithPatience(0))
		if err != nil {
			t.Fatalf("Named(%q): %v", name, err)
		}
		if err := l.Lock(context.Background()); err != nil {
			t.Fatalf("locking %q: %v", name, err)
		}
		defer l.Unlock()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(names) {
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		t.Fatalf("%d locks held, %d directories made: %q", len(names), len(entries), got)
	}
}

// A lock at a path beyond MAX_PATH (260 characters): made, held, watched
// (a waiter is woken by the release, not by a poll) and released. On
// Windows the calls dlock makes itself take the \\?\ form (fsys.LongPath).
func TestLockBeyondMaxPath(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 300 {
		dir = filepath.Join(dir, strings.Repeat("d", 60))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a-lock-beyond-max-path")
	t.Logf("lock path of %d characters", len(path))
	holder, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	waiter, err := New(path, WithPollInterval(never), WithPatience(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan struct{}, 10)
	waiter.testBlocked = func() { blocked <- struct{}{} }
	done := make(chan error, 1)
	go func() { done <- waiter.Lock(context.Background()) }()
	waitFor(t, blocked, "the waiter to wait")
	if err := holder.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "the waiter, woken by its watch of the long path"); err != nil {
		t.Fatal(err)
	}
	st, err := Inspect(path)
	if err != nil || !st.Held {
		t.Fatalf("Inspect = %+v, %v", st, err)
	}
	if err := waiter.Unlock(); err != nil {
		t.Fatal(err)
	}
	// The waiter leaves its watch in the background once it acquired; on
	// Windows a watched directory cannot be removed at once (t.TempDir's
	// cleanup): wait until nothing of ours watches the lock.
	for deadline := time.Now().Add(10 * time.Second); watch.Subscribers(path) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}
