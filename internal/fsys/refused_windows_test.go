package fsys

// Windows' own refusals, made for real (a handle another "program" keeps
// open), and the classification of the paths Windows locks live on. Under
// Wine (scripts/wine.sh) these run on Wine's emulation of sharing modes
// and delete-pending names, which is Windows' documented behaviour
// without POSIX delete semantics (FAT, many SMB servers); NTFS on Windows
// 10 and later removes a name at once even while it is open, which the
// tests accept too.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"
)

// openDir opens dir as an antivirus or indexer would: sharing read and
// write, and delete only if shareDelete.
func openDir(t *testing.T, dir string, shareDelete bool) windows.Handle {
	t.Helper()
	share := uint32(windows.FILE_SHARE_READ | windows.FILE_SHARE_WRITE)
	if shareDelete {
		share |= windows.FILE_SHARE_DELETE
	}
	p, _ := windows.UTF16PtrFromString(dir)
	h, err := windows.CreateFile(p, windows.GENERIC_READ, share, nil, windows.OPEN_EXISTING, windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A rename of an entry another process has open without sharing delete is
// a sharing violation (or Access is denied): retried for a moment, so a
// scan that ends meanwhile costs nothing; a lasting one is a RefusedError
// that matches ErrTransient and the OS's error, and changes nothing.
func TestRenameOfAnOpenEntryIsRefusedThenRetried(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "held.1"), filepath.Join(dir, "held.2")
	if err := os.Mkdir(from, 0o755); err != nil {
		t.Fatal(err)
	}
	h := openDir(t, from, false)
	start := time.Now()
	err := RenameEntry(from, to)
	var refused *RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, ErrTransient) {
		windows.CloseHandle(h)
		t.Fatalf("rename of an entry held open = %v, want a RefusedError", err)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, windows.ERROR_SHARING_VIOLATION) && !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		t.Errorf("refusal %v is neither a sharing violation nor Access is denied", err)
	}
	if _, err := os.Lstat(from); err != nil {
		t.Errorf("the refused rename moved the entry: %v", err)
	}
	// The scan ends while the rename is retried: it succeeds.
	go func() {
		time.Sleep(20 * time.Millisecond)
		windows.CloseHandle(h)
	}()
	if err := RenameEntry(from, to); err != nil {
		t.Fatalf("rename once the handle closed = %v", err)
	}
	if ok, err := IsRealDir(to); !ok || err != nil {
		t.Fatalf("renamed entry: %v, %v", ok, err)
	}
}

// A directory removed while another process has it open (sharing delete)
// is delete-pending where there are no POSIX delete semantics: its name
// stays, and calls on it are refused (ErrTransient, never "not there" nor
// a fatal error) until the handle closes; then it is gone. With POSIX
// semantics (NTFS, Windows 10 and later) it is gone at once.
func TestDeletePendingName(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "lock")
	if err := os.Mkdir(lock, 0o755); err != nil {
		t.Fatal(err)
	}
	h := openDir(t, lock, true)
	defer func() {
		if h != 0 {
			windows.CloseHandle(h)
		}
	}()
	if err := os.Remove(lock); err != nil {
		t.Fatalf("removing a directory open with FILE_SHARE_DELETE: %v", err)
	}
	if _, err := os.Lstat(lock); errors.Is(err, fs.ErrNotExist) {
		t.Log("gone at once: POSIX delete semantics")
	} else {
		// Listing it: refused as a refusal that passes (Windows), or an
		// empty listing (Wine lists it): never a fatal error.
		names, err := ReadNames(lock)
		if err != nil && !IsTransient(err) && !errors.Is(err, fs.ErrNotExist) || len(names) != 0 {
			t.Errorf("listing a delete-pending directory = %q, %v; want a refusal that passes, or nothing", names, err)
		}
		t.Logf("delete-pending: listing gives %q, %v", names, err)
		// Making it again, as a lock's creation renames a stage onto it:
		// refused, as a refusal that passes (or as existing), never done.
		stage := filepath.Join(dir, "stage")
		os.Mkdir(stage, 0o755)
		err = RenameNoReplace(stage, lock)
		if err == nil || !IsTransient(err) && !errors.Is(err, fs.ErrExist) {
			t.Errorf("rename onto a delete-pending name = %v, want a refusal that passes", err)
		}
		t.Logf("rename onto it: %v", err)
		os.Remove(stage)
	}
	windows.CloseHandle(h)
	h = 0
	if _, err := ReadNames(lock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after the last handle closed: %v, want not-exist", err)
	}
}

// Which of Windows' errors are refusals that pass.
func TestTransientErrorsOnWindows(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{windows.ERROR_SHARING_VIOLATION, true},
		{windows.ERROR_LOCK_VIOLATION, true},
		{windows.ERROR_ACCESS_DENIED, true},
		{windows.ERROR_DELETE_PENDING, true},
		{&os.LinkError{Op: "rename", Old: "a", New: "b", Err: windows.ERROR_SHARING_VIOLATION}, true},
		{&os.PathError{Op: "open", Path: "a", Err: windows.ERROR_ACCESS_DENIED}, true},
		{windows.ERROR_FILE_NOT_FOUND, false},
		{windows.ERROR_PATH_NOT_FOUND, false},
		{windows.ERROR_ALREADY_EXISTS, false},
		{windows.ERROR_DIR_NOT_EMPTY, false},
		{errors.New("other"), false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// UNC paths and mapped network drives are network shares (waiters poll);
// local drives are local; the \\?\ forms count as the short ones.
func TestLocalOrShare(t *testing.T) {
	saved := driveType
	defer func() { driveType = saved }()
	types := map[string]uint32{`C:\`: windows.DRIVE_FIXED, `Z:\`: windows.DRIVE_REMOTE, `R:\`: windows.DRIVE_RAMDISK, `E:\`: windows.DRIVE_REMOVABLE}
	driveType = func(root string) uint32 { return types[root] }
	for _, tc := range []struct {
		dir  string
		want bool
	}{
		{`C:\locks`, true},
		{`\\?\C:\very\long\locks`, true},
		{`R:\locks`, true},
		{`E:\locks`, true},
		{`Z:\locks`, false}, // a drive letter mapped to \\server\share
		{`\\server\share\locks`, false},
		{`\\?\UNC\server\share\locks`, false},
		{`Q:\locks`, false}, // unknown drive type
	} {
		if got := isLocalFS(tc.dir); got != tc.want {
			t.Errorf("IsLocal(%s) = %v, want %v", tc.dir, got, tc.want)
		}
	}
	driveType = saved
	tmp := t.TempDir()
	t.Logf("the temporary directory %s: local %v (drive type %d)", tmp, IsLocal(tmp), driveType(tmp[:3]))
}

// The exclusive rename, to names of every length (one character: shorter
// than the rename structure itself), never replaces an existing target,
// directory or file.
func TestRenameNoReplaceWindows(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"0", "ab", "held.1", strings.Repeat("n", 200)} {
		from := filepath.Join(dir, "src")
		if err := os.Mkdir(from, 0o755); err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, name)
		if err := RenameNoReplace(from, to); err != nil {
			t.Fatalf("rename to %q: %v", name, err)
		}
		if ok, err := IsRealDir(to); !ok || err != nil {
			t.Fatalf("%q after the rename: %v, %v", name, ok, err)
		}
	}
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	for _, target := range []string{"0", "file"} {
		err := RenameNoReplace(src, filepath.Join(dir, target))
		if !errors.Is(err, fs.ErrExist) || IsTransient(err) {
			t.Errorf("rename onto the existing %q = %v, want fs.ErrExist (not a refusal)", target, err)
		}
	}
}
