//go:build linux

package dlock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
)

// These tests need the SMB rig (scripts/smbfs.sh): one Samba share mounted
// twice through smbnetfs, where two renames of one name can both succeed.
// They run when DLOCK_SHAREDFS_KIND=smbnetfs and DLOCK_SHAREDFS_M1,
// DLOCK_SHAREDFS_M2 name the share through each mount. dlock must refuse
// to lock there, at once, and create nothing.

func needSMB(t *testing.T) sharedFS {
	t.Helper()
	if os.Getenv("DLOCK_SHAREDFS_KIND") != "smbnetfs" {
		t.Skip("no SMB rig: set DLOCK_SHAREDFS_KIND=smbnetfs and DLOCK_SHAREDFS_M1, DLOCK_SHAREDFS_M2 (scripts/smbfs.sh up)")
	}
	return needSharedFS(t)
}

func TestSMB(t *testing.T) {
	fs := needSMB(t)
	// First what the filesystem guarantees today, so that a failure below
	// can be told from a filesystem that changed.
	t.Run("probe", func(t *testing.T) { runProbe(t, fs) })
	t.Run("refused", func(t *testing.T) { testSMBRefused(t, fs) })
	t.Run("allowed", func(t *testing.T) { testSMBAllowed(t, fs) })
}

// runProbe runs scripts/probe on the two mounts (DLOCK_PROBE_ROUNDS
// rounds, default 300) and prints what it says.
func runProbe(t *testing.T, fs sharedFS) {
	rounds := os.Getenv("DLOCK_PROBE_ROUNDS")
	if rounds == "" {
		rounds = "300"
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to run scripts/probe")
	}
	out, err := exec.Command(goTool, "run", "./scripts/probe", fs.m1, fs.m2, "-rounds", rounds).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("scripts/probe: %v", err)
	}
}

// testSMBRefused: every kind of lock, through each mount, fails at once
// with ErrUnsafeFS naming the mount, and nothing is created.
func testSMBRefused(t *testing.T, fs sharedFS) {
	d1, d2 := fs.dirs(t)
	opts := []Option{WithTimeout(fs.timeout)}
	kinds := []struct {
		name string
		make func(path string) (Locker, error)
	}{
		{"Lock", func(p string) (Locker, error) { return New(p, opts...) }},
		{"Named", func(p string) (Locker, error) { return Named("job", append(opts, WithDir(filepath.Dir(p)))...) }},
		{"Semaphore", func(p string) (Locker, error) { return NewSemaphore(p, 3, opts...) }},
		{"RWLock", func(p string) (Locker, error) { return NewRWLock(p, opts...) }},
		{"RWLock.RLocker", func(p string) (Locker, error) {
			rw, err := NewRWLock(p, opts...)
			if err != nil {
				return nil, err
			}
			return rw.RLocker(), nil
		}},
	}
	type attempt struct {
		name string
		try  func(path string) error
	}
	var attempts []attempt
	for _, k := range kinds {
		attempts = append(attempts, attempt{k.name + ".Lock", func(p string) error {
			l, err := k.make(p)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return l.Lock(ctx)
		}}, attempt{k.name + ".TryLock", func(p string) error {
			l, err := k.make(p)
			if err != nil {
				return err
			}
			_, err = l.TryLock()
			return err
		}})
	}
	for i, dir := range []string{d1, d2} {
		// The rig mounts at MOUNT and the share is MOUNT/SERVER/SHARE.
		mountPoint := filepath.Dir(filepath.Dir(filepath.Dir(dir)))
		for _, a := range attempts {
			path := filepath.Join(dir, "job")
			start := time.Now()
			err := a.try(path)
			took := time.Since(start)
			if a.name == attempts[0].name || !errors.Is(err, ErrUnsafeFS) {
				t.Logf("mount %d, %s: after %s: %v", i+1, a.name, took.Round(time.Millisecond), err)
			} else {
				t.Logf("mount %d, %s: refused after %s", i+1, a.name, took.Round(time.Millisecond))
			}
			switch {
			case !errors.Is(err, ErrUnsafeFS):
				t.Errorf("mount %d, %s: %v, want ErrUnsafeFS", i+1, a.name, err)
			case !strings.Contains(err.Error(), "is on "+mountPoint+", an smbnetfs mount"):
				t.Errorf("mount %d, %s: %q does not name the mount %s", i+1, a.name, err, mountPoint)
			case !strings.Contains(err.Error(), "mount -t cifs"):
				t.Errorf("mount %d, %s: %q does not say what to use instead", i+1, a.name, err)
			}
			// At once: no waiting for PATIENCE or ctx. Generous, for a
			// loaded machine: a refused attempt reads the mount table only.
			if took > 5*time.Second {
				t.Errorf("mount %d, %s: refused only after %s", i+1, a.name, took)
			}
		}
	}
	// Nothing was created, through either mount nor on the server.
	dirs := []string{d1, d2}
	if export := os.Getenv("DLOCK_SHAREDFS_EXPORT"); export != "" {
		dirs = append(dirs, filepath.Join(export, filepath.Base(d1)))
	}
	for _, d := range dirs {
		names, err := fsys.ReadNames(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 0 {
			t.Errorf("%s holds %v after refused attempts, want nothing", d, names)
		}
	}
}

// testSMBAllowed: with the check turned off (DLOCK_UNSAFE_FS=allow), the
// same lock is taken: the refusal above was the check, not a broken mount.
func testSMBAllowed(t *testing.T, fs sharedFS) {
	d1, _ := fs.dirs(t)
	t.Setenv(fsys.UnsafeEnv, "allow")
	l, err := New(filepath.Join(d1, "job"), WithTimeout(fs.timeout))
	if err != nil {
		t.Fatal(err)
	}
	ok, err := l.TryLock()
	if !ok || err != nil {
		t.Fatalf("TryLock with %s=allow: %v, %v", fsys.UnsafeEnv, ok, err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	t.Logf("with %s=allow: locked and unlocked %s", fsys.UnsafeEnv, l.Path())
}
