package dlock

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func validComponent(t *testing.T, name, file string) {
	t.Helper()
	if file == "" || file == "." || file == ".." || len(file) > 200 || strings.ContainsAny(file, "/\\:*?\"<>|\x00 ") ||
		strings.HasSuffix(file, ".") || strings.HasPrefix(file, ".") || strings.ToLower(file) != file && !strings.Contains(file, "%") {
		t.Fatalf("NameToFile(%q) = %q: not a safe file name", name, file)
	}
}

func TestNameToFile(t *testing.T) {
	names := []string{"", ".", "..", "../../etc/passwd", "a/b", "a\\b", "CON", "con", "nul.txt", "Foo", "foo",
		"backup.daily", "trailing.", "trailing", "%41", "A", "~", "日本語", "a b", strings.Repeat("x", 10000),
		strings.Repeat("x", 10000) + "y", strings.Repeat("É", 5000)}
	seen := map[string]string{}
	for _, n := range names {
		f := NameToFile(n)
		validComponent(t, n, f)
		if other, dup := seen[f]; dup {
			t.Fatalf("%q and %q both map to %q", n, other, f)
		}
		seen[f] = n
	}
	if NameToFile("backup.daily") != "n-backup.daily" {
		t.Errorf("a plain name should stay readable: %q", NameToFile("backup.daily"))
	}
}

// FuzzNameToFile: every name maps to a safe file name, and two distinct
// names never map to the same one.
func FuzzNameToFile(f *testing.F) {
	f.Add("a", "A")
	f.Add("x.", "x%2e")
	f.Add(strings.Repeat("ab", 100), strings.Repeat("ab", 100)+"c")
	f.Add("../x", "..%2fx")
	f.Fuzz(func(t *testing.T, a, b string) {
		fa, fb := NameToFile(a), NameToFile(b)
		validComponent(t, a, fa)
		if a != b && fa == fb {
			t.Fatalf("%q and %q both map to %q", a, b, fa)
		}
	})
}

func TestDefaultDirIsPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no Unix modes: DefaultDir is dlock in the user's temporary directory, private by its ACL")
	}
	xdg := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	dir, err := DefaultDir()
	if err != nil || dir != filepath.Join(xdg, "dlock") {
		t.Fatalf("DefaultDir = %q, %v", dir, err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, want 0700", fi.Mode().Perm())
	}
	// A symlink planted where the directory goes is refused, and so is a
	// directory others can write.
	planted := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", planted)
	os.Symlink(t.TempDir(), filepath.Join(planted, "dlock"))
	if _, err := DefaultDir(); err == nil {
		t.Fatal("DefaultDir accepted a planted symlink")
	}
	open := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", open)
	os.Mkdir(filepath.Join(open, "dlock"), 0o777)
	os.Chmod(filepath.Join(open, "dlock"), 0o777)
	if _, err := DefaultDir(); err == nil {
		t.Fatal("DefaultDir accepted a world-writable directory")
	}
	// Without XDG_RUNTIME_DIR: a per-user directory in the temp dir.
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("TMPDIR", xdg)
	if dir, err := DefaultDir(); err != nil || !strings.HasPrefix(filepath.Base(dir), "dlock-") {
		t.Fatalf("DefaultDir without XDG_RUNTIME_DIR = %q, %v", dir, err)
	}
}

func TestNamedLocksExclude(t *testing.T) {
	dir := t.TempDir()
	a, err := Named("../../etc/passwd", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(a.Path()) != dir {
		t.Fatalf("named lock at %s, outside %s", a.Path(), dir)
	}
	b, _ := Named("../../etc/passwd", WithDir(dir))
	c, _ := Named("../../etc/passwd ", WithDir(dir))
	mustLock(t, a)
	if ok, _ := b.TryLock(); ok {
		t.Fatal("two Named locks of one name both held")
	}
	if ok, err := c.TryLock(); !ok || err != nil {
		t.Fatalf("a different name is a different lock: %v, %v", ok, err)
	}
}

func TestTrySingleInstance(t *testing.T) {
	dir := t.TempDir()
	l, err := TrySingleInstance(WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	_, err = TrySingleInstance(WithDir(dir))
	var ar *AlreadyRunningError
	if !errors.As(err, &ar) || !errors.Is(err, ErrBusy) || ar.Holder.PID != os.Getpid() {
		t.Fatalf("second instance: %v", err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if want := "another " + exe + " is already running (pid " + strconv.Itoa(os.Getpid()) + " on "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("message %q, want it to start %q", err, want)
	}
}
