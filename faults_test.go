//go:build linux

package dlock

// Faults and bad input: full and read-only filesystems, permissions,
// directories removed or swapped for symlinks under a holder, garbage in
// the lock directory, corrupt records and clock jumps. Each must give a
// clear error (at once where waiting cannot help), never a panic, and
// must leave everything that is not the lock's own state entry alone.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
	"golang.org/x/sys/unix"
)

// atOnce bounds how long an error that waiting cannot fix may take.
const atOnce = 2 * time.Second

// mountTmpfs mounts a tmpfs with the given options on a new directory,
// unmounted at cleanup. It skips the test unless it can.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): run as root on Linux, outside a restricted container", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// An overlay filesystem (a container's root): locks made in it work as
// anywhere, waiters woken by its inotify events; a lock directory that
// came with a lower layer (baked into an image) cannot have its entry
// renamed (EXDEV), which Lock reports at once, saying why, touching
// nothing.
func TestOverlayFS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root")
	}
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{lower, upper, work, merged} {
		os.Mkdir(d, 0o755)
	}
	baked, err := New(filepath.Join(lower, "baked"))
	if err == nil {
		err = baked.Lock(context.Background())
	}
	if err == nil {
		err = baked.Unlock()
	}
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, lower)
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Skipf("cannot mount an overlay here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, 0); err != nil {
			unix.Unmount(merged, unix.MNT_DETACH)
		}
	})

	path := filepath.Join(merged, "lock")
	a, _ := New(path)
	b, _ := New(path, WithPollInterval(time.Hour)) // only an event can wake it in time
	if err := a.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	lockWithin(t, b, 30*time.Second, func() {
		if err := a.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	b.Unlock()

	l, _ := New(filepath.Join(merged, "baked"))
	err = lockAtOnce(t, l)
	if !errors.Is(err, syscall.EXDEV) || !strings.Contains(err.Error(), "overlay") {
		t.Fatalf("Lock of a lock directory in the lower layer = %v, want EXDEV explained", err)
	}
	unix.Unmount(merged, 0)
	if after := tree(t, lower); after != before {
		t.Fatalf("the lower layer changed:\n%s\nthen:\n%s", before, after)
	}
}

// lockAtOnce calls Lock with no PATIENCE limit and returns its error,
// failing the test unless it returned an error quickly that is not busy.
func lockAtOnce(t *testing.T, l *Lock) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := l.Lock(ctx)
	took := time.Since(start)
	switch {
	case err == nil:
		t.Fatalf("Lock of %s succeeded, want an error", l.Path())
	case errors.Is(err, ErrBusy) || ctx.Err() != nil:
		t.Fatalf("Lock = %v after %v, want an error at once, not busy", err, took)
	case took > atOnce:
		t.Fatalf("Lock took %v to fail (%v), want at once", took, err)
	case !strings.Contains(err.Error(), l.Path()) && !strings.Contains(err.Error(), filepath.Dir(l.Path())):
		t.Errorf("error %q does not name the lock", err)
	}
	return err
}

// fillInodes creates files in dir until the filesystem has no inode (or
// block) left, and returns their paths.
func fillInodes(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for i := 0; ; i++ {
		p := filepath.Join(dir, fmt.Sprintf("fill%03d", i))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return files
		}
		f.Close()
		files = append(files, p)
		if i > 100000 {
			t.Fatal("the filesystem never filled")
		}
	}
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// No inode left: creating a lock fails at once with ENOSPC, whichever of
// its three directories (stage, entry, queue) the filesystem refuses, and
// leaves no half-made lock behind. An existing lock still works: its
// transitions are renames, which need no space.
func TestNoSpace(t *testing.T) {
	dir := mountTmpfs(t, "size=64k,nr_inodes=16")
	existing := filepath.Join(dir, "existing")
	l, err := New(existing)
	if err != nil {
		t.Fatal(err)
	}
	mustLock(t, l)
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	files := fillInodes(t, dir)
	path := filepath.Join(dir, "lock")
	for free := 0; free <= 2; free++ {
		t.Run(fmt.Sprintf("%d inodes free", free), func(t *testing.T) {
			for _, f := range files[len(files)-free:] {
				os.Remove(f)
			}
			defer func() {
				for _, f := range files[len(files)-free:] {
					if err := os.WriteFile(f, nil, 0o644); err != nil {
						t.Fatalf("refilling: %v", err)
					}
				}
			}()
			before := tree(t, dir)
			nl, err := New(path)
			if err != nil {
				t.Fatal(err)
			}
			err = lockAtOnce(t, nl)
			if !isNoSpace(err) {
				t.Fatalf("Lock on a full filesystem = %v, want ENOSPC", err)
			}
			if ok, err := nl.TryLock(); ok || !isNoSpace(err) {
				t.Fatalf("TryLock on a full filesystem = %v, %v; want ENOSPC", ok, err)
			}
			if after := tree(t, dir); after != before {
				t.Fatalf("a failed Lock left changes:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	// The existing lock: acquire, heartbeat and release are renames.
	l2, _ := New(existing)
	if err := l2.Lock(context.Background()); err != nil {
		t.Fatalf("Lock of an existing free lock on a full filesystem = %v, want it to work (renames need no space)", err)
	}
	if err := l2.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// No data block left (inodes remain): nothing dlock writes needs one, but
// whatever happens, it is at once and never "busy".
func TestNoSpaceBlocks(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	f, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	l, _ := New(filepath.Join(dir, "lock"))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = l.Lock(ctx)
	if time.Since(start) > atOnce || errors.Is(err, ErrBusy) || (err != nil && !isNoSpace(err)) {
		t.Fatalf("Lock with no data blocks left = %v after %v; want success or ENOSPC at once", err, time.Since(start))
	}
	if err == nil {
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
}

func remount(t *testing.T, dir, opts string, flags uintptr) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT|flags, opts); err != nil {
		t.Fatalf("remounting %s: %v", dir, err)
	}
}

// A read-only filesystem: Lock fails at once with EROFS, for an existing
// free lock and for a new one; Inspect still reads the lock.
func TestReadOnlyFilesystem(t *testing.T) {
	dir := mountTmpfs(t, "size=1m")
	path := filepath.Join(dir, "lock")
	l, _ := New(path)
	mustLock(t, l)
	fence := l.Fence()
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	remount(t, dir, "size=1m", unix.MS_RDONLY)
	defer remount(t, dir, "size=1m", 0)
	before := tree(t, dir)
	for _, p := range []string{path, filepath.Join(dir, "new")} {
		for _, fresh := range []bool{false, true} {
			lk := l
			if fresh || p != path {
				lk, _ = New(p)
			}
			if err := lockAtOnce(t, lk); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("Lock of %s on a read-only filesystem = %v, want EROFS", p, err)
			}
			if ok, err := lk.TryLock(); ok || !errors.Is(err, syscall.EROFS) {
				t.Fatalf("TryLock on a read-only filesystem = %v, %v; want EROFS", ok, err)
			}
		}
	}
	st, err := Inspect(path)
	if err != nil || !st.Exists || st.Held || st.Fence != fence {
		t.Fatalf("Inspect on a read-only filesystem = %+v, %v; want free with fence %d", st, err, fence)
	}
	if after := tree(t, dir); after != before {
		t.Fatalf("changes on a read-only filesystem?\n%s\n%s", before, after)
	}
}

// A held lock whose filesystem turns read-only cannot be refreshed: the
// holder keeps retrying, and after TIMEOUT without a refresh it reports
// the lock lost (another host may reclaim it by then).
func TestReadOnlyWhileHeld(t *testing.T) {
	dir := mountTmpfs(t, "size=1m")
	r := newRig(t)
	r.path = filepath.Join(dir, "lock")
	a := r.lock(WithTimeout(3 * time.Second))
	mustLock(t, a)
	remount(t, dir, "size=1m", unix.MS_RDONLY)
	defer remount(t, dir, "size=1m", 0)
	for i := 1; i <= 2; i++ {
		r.clk.Add(time.Second)
		waitFor(t, hooks[a].beats, "a failing heartbeat")
		select {
		case <-a.Lost():
			t.Fatalf("lost after %ds of failed refreshes, before its deadline", i)
		default:
		}
	}
	// The deadline: TIMEOUT 3s - MARGIN 600ms after the acquisition.
	r.clk.Add(400*time.Millisecond - time.Nanosecond)
	select {
	case <-a.Lost():
		t.Fatal("lost before its deadline")
	default:
	}
	r.clk.Add(time.Nanosecond)
	waitFor(t, a.Lost(), "Lost at the deadline without a refresh")
	if err := a.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("Unlock = %v, want ErrLost", err)
	}
}

// permChild is the unprivileged side of TestPermissionDenied: it tries
// the lock at DLOCK_PATH once and says what happened.
func permChild() int {
	path := os.Getenv("DLOCK_PATH")
	l, err := New(path)
	if err != nil {
		fmt.Println("new", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = l.Lock(ctx)
	fmt.Printf("lock perm=%v busy=%v ctx=%v ms=%d err=%v\n", errors.Is(err, fs.ErrPermission), errors.Is(err, ErrBusy),
		ctx.Err() != nil, time.Since(start).Milliseconds(), err)
	st, err := Inspect(path)
	fmt.Printf("inspect exists=%v held=%v fence=%d err=%v\n", st.Exists, st.Held, st.Fence, err)
	return 0
}

// An unprivileged user against a root-owned 0755 lock (and a 0755
// directory where a new lock would go) gets permission denied at once,
// can still Inspect, and changes nothing.
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a child as nobody")
	}
	// The test binary and the locks where nobody can reach them.
	base, err := os.MkdirTemp("", "dlock-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	exe := filepath.Join(base, "dlock.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	src.Close()
	if cerr := dst.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	locks := filepath.Join(base, "locks")
	os.Mkdir(locks, 0o755)
	existing := filepath.Join(locks, "existing")
	l, _ := New(existing)
	mustLock(t, l)
	fence := l.Fence()
	l.Unlock()

	// A lock of root's made sticky by hand (WithPermissions refuses the
	// sticky bit): the state entry is root's, and the sticky bit lets only
	// its owner rename it.
	sticky := filepath.Join(locks, "sticky")
	sl, _ := New(sticky, WithPermissions(0o777|fs.ModeSticky))
	mustLock(t, sl)
	sl.Unlock()
	if fi, _ := os.Stat(sticky); fi.Mode()&fs.ModeSticky != 0 {
		t.Fatal("WithPermissions set the sticky bit")
	}
	os.Chmod(sticky, 0o777|fs.ModeSticky)
	if fi, err := os.Stat(sticky); err != nil || fi.Mode()&fs.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("sticky lock directory: %v, %v", fi.Mode(), err)
	}

	for _, tc := range []struct {
		name, path string
		exists     bool
		say        string
	}{
		{"free lock", existing, true, "permission denied"},
		{"new lock", filepath.Join(locks, "new"), false, "permission denied"},
		{"sticky lock", sticky, true, "operation not permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tree(t, locks)
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Dir = base
			cmd.Env = append(os.Environ(), "DLOCK_TEST_CHILD=perm", "DLOCK_PATH="+tc.path, "HOME="+base)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child as nobody: %v: %s", err, out)
			}
			t.Logf("child as nobody said:\n%s", out)
			s := string(out)
			if !strings.Contains(s, "lock perm=true busy=false ctx=false") || !strings.Contains(s, tc.say) || !strings.Contains(s, tc.path) {
				t.Fatalf("child's Lock did not fail with a permission error naming the lock: %s", s)
			}
			var ms int64
			fmt.Sscanf(s[strings.Index(s, "ms=")+3:], "%d", &ms)
			if time.Duration(ms)*time.Millisecond > atOnce {
				t.Fatalf("permission denied took %dms", ms)
			}
			want := fmt.Sprintf("inspect exists=%v held=false fence=", tc.exists)
			if !strings.Contains(s, want) || !strings.Contains(s, "err=<nil>\n") {
				t.Fatalf("child's Inspect: %s; want %q", s, want)
			}
			if tc.path == existing && !strings.Contains(s, fmt.Sprintf("fence=%d err=<nil>", fence)) {
				t.Fatalf("child's Inspect did not read fence %d: %s", fence, s)
			}
			if after := tree(t, locks); after != before {
				t.Fatalf("the child changed the locks:\n%s\n%s", before, after)
			}
		})
	}
}

// The lock directory removed, renamed away or replaced while held: the
// holder is told at its next heartbeat, its Unlock is ErrLost, and it
// touches neither the moved directory nor a new lock at the path.
func TestLockDirectoryGoneWhileHeld(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(r *rig) func(t *testing.T) // returns a check of what it left
	}{
		{"renamed away", func(r *rig) func(*testing.T) {
			held := r.entryName()
			if err := os.Rename(r.path, r.path+".moved"); err != nil {
				r.t.Fatal(err)
			}
			return func(t *testing.T) {
				if names, _ := fsys.ReadNames(r.path + ".moved"); !slices.Contains(names, held) {
					t.Fatalf("the moved directory holds %q, want %q untouched", names, held)
				}
			}
		}},
		{"rm -rf", func(r *rig) func(*testing.T) {
			os.RemoveAll(r.path)
			return func(t *testing.T) {
				if _, err := os.Lstat(r.path); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("the removed lock came back: %v", err)
				}
			}
		}},
		{"rm -rf and mkdir", func(r *rig) func(*testing.T) {
			os.RemoveAll(r.path)
			os.Mkdir(r.path, 0o755)
			return func(t *testing.T) {
				if names, _ := fsys.ReadNames(r.path); len(names) != 0 {
					t.Fatalf("the holder wrote %q into a directory that is not its lock", names)
				}
			}
		}},
		{"rm -rf and another holder", func(r *rig) func(*testing.T) {
			os.RemoveAll(r.path)
			b := r.lock(WithTimeout(time.Hour))
			mustLock(r.t, b)
			held := r.entryName()
			return func(t *testing.T) {
				if n := r.entryName(); n != held {
					t.Fatalf("the new holder's entry %q became %q", held, n)
				}
				if err := b.Unlock(); err != nil {
					t.Fatalf("new holder's Unlock = %v", err)
				}
			}
		}},
	} {
		for _, heartbeat := range []bool{true, false} {
			name := tc.name + "/Unlock at once"
			if heartbeat {
				name = tc.name + "/heartbeat"
			}
			t.Run(name, func(t *testing.T) {
				r := newRig(t)
				a := r.lock(WithTimeout(3 * time.Second))
				mustLock(t, a)
				lost := a.Lost()
				check := tc.break_(r)
				if heartbeat {
					r.clk.Add(time.Second)
					waitFor(t, hooks[a].beats, "heartbeat")
					waitFor(t, lost, "Lost to close")
				}
				err := a.Unlock()
				if !errors.Is(err, ErrLost) {
					t.Fatalf("Unlock after the directory went = %v, want ErrLost", err)
				}
				select {
				case <-lost:
				default:
					t.Fatal("Lost not closed after ErrLost")
				}
				check(t)
			})
		}
	}
}

// Foreign files beside a valid entry are ignored and never touched,
// through acquire, heartbeat, release and reclaim.
func TestForeignFilesUntouched(t *testing.T) {
	r := newRig(t)
	a := r.lock(WithTimeout(3 * time.Second))
	mustLock(t, a)
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"README", ".hidden", "held", "free", "heldx.1", "Free.1", "lock.json"} {
		os.WriteFile(filepath.Join(r.path, f), []byte("note "+f), 0o600)
	}
	os.MkdirAll(filepath.Join(r.path, "data", "deep"), 0o700)
	os.WriteFile(filepath.Join(r.path, "data", "deep", "x"), []byte("x"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(r.path, "link"))
	snapshot := func() string {
		var b strings.Builder
		for _, line := range strings.Split(tree(t, r.path), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if name := f[0]; !lockdir.IsStateName(name) && name != "." && !strings.HasPrefix(name, lockdir.QueueDir) {
				b.WriteString(line + "\n")
			}
		}
		return b.String()
	}
	before := snapshot()
	mustLock(t, a)
	r.clk.Add(time.Second)
	waitFor(t, hooks[a].beats, "heartbeat")
	pause(a)
	b := r.lock()
	r.clk.Add(3 * time.Second)
	if ok, err := b.TryLock(); !ok || err != nil {
		t.Fatalf("reclaim beside foreign files = %v, %v", ok, err)
	}
	if err := a.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("late Unlock = %v", err)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
	if st, err := Inspect(r.path); err != nil || st.Held {
		t.Fatalf("Inspect = %+v, %v", st, err)
	}
	if after := snapshot(); after != before {
		t.Fatalf("foreign files changed:\n%s\n%s", before, after)
	}
}

// Things in the waiters' queue that are named like tickets of dead waiters
// but are not tickets (a file; a directory with something in it) stay, and
// a waiter behind them passes over them: it watches the ticket before
// them, and is woken in turn. (The mock clock never moves and waiters
// never poll: only events wake them.)
func TestForeignThingsInTheQueue(t *testing.T) {
	eachHub(t, func(t *testing.T) {
		r := newRig(t)
		holder, w1, w2 := r.lock(), r.lock(), r.lock()
		mustLock(t, holder)
		d1 := r.lockAsync(context.Background(), w1)
		q := filepath.Join(r.path, lockdir.QueueDir)
		dead := 1 << 30 // above any pid_max: no such process
		r.clk.Add(time.Microsecond)
		dir := fmt.Sprintf("%020d.%016x.%d.%s", r.clk.Now().UnixNano(), 1, dead, lockdir.Self().HostID)
		r.clk.Add(time.Microsecond)
		file := fmt.Sprintf("%020d.%016x.%d.%s", r.clk.Now().UnixNano(), 2, dead, lockdir.Self().HostID)
		r.clk.Add(time.Microsecond)
		if err := os.MkdirAll(filepath.Join(q, dir, "inside"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(q, file), []byte("not a ticket"), 0o600); err != nil {
			t.Fatal(err)
		}
		d2 := r.lockAsync(context.Background(), w2)
		if n := watchersOf(r.path); n != 1 {
			t.Fatalf("%d waits watch the lock directory, want 1 (the first in line)", n)
		}
		inTurn(t, holder, []*Lock{w1, w2}, []<-chan error{d1, d2})
		if b, err := os.ReadFile(filepath.Join(q, file)); err != nil || string(b) != "not a ticket" {
			t.Fatalf("foreign file in the queue: %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(q, dir, "inside")); err != nil {
			t.Fatalf("foreign directory in the queue: %v", err)
		}
	})
}

// Garbage state entries (names starting held. or free. that do not parse,
// directories or files) are unknown holders: never a panic, reclaimed
// only after TIMEOUT seen unchanged, and the lock works afterwards.
func TestGarbageStateEntries(t *testing.T) {
	for _, name := range []string{
		"held.garbage", "held.", "held..", "held.1.2.3", "free.", "free.abc", "free.-1", "free.007", "free.+7",
		"free.18446744073709551616", "free.1.2", "free. 1", "free.1\n", "held.\xff\xfe", "free.\x80",
	} {
		for _, file := range []bool{false, true} {
			t.Run(fmt.Sprintf("%q/file=%v", name, file), func(t *testing.T) {
				r := newRig(t)
				os.Mkdir(r.path, 0o755)
				os.WriteFile(filepath.Join(r.path, "foreign"), []byte("keep"), 0o644)
				p := filepath.Join(r.path, name)
				if file {
					os.WriteFile(p, nil, 0o644)
				} else {
					os.Mkdir(p, 0o755)
				}
				garbageReclaimedAfterTimeout(t, r)
				if b, err := os.ReadFile(filepath.Join(r.path, "foreign")); err != nil || string(b) != "keep" {
					t.Fatal("the foreign file was touched")
				}
			})
		}
	}
}

// garbageReclaimedAfterTimeout: the single unparsable entry at r.path is
// an unknown holder to Inspect and TryLock until a waiter has seen it
// unchanged for its TIMEOUT; then it is reclaimed with a fresh fence.
func garbageReclaimedAfterTimeout(t *testing.T, r *rig) {
	t.Helper()
	st, err := Inspect(r.path)
	if err != nil || !st.Held || !st.Holder.Unknown || st.Stale {
		t.Fatalf("Inspect = %+v, %v; want held by an unknown holder", st, err)
	}
	_ = st.String()
	w := r.lock(WithTimeout(time.Second), WithPatience(0))
	err = w.Lock(context.Background())
	var be *BusyError
	if !errors.As(err, &be) || !be.Holder.Unknown {
		t.Fatalf("Lock = %v, want busy with an unknown holder", err)
	}
	_ = be.Error()
	r.clk.Add(time.Second - time.Nanosecond)
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock before TIMEOUT = %v, %v", ok, err)
	}
	r.clk.Add(time.Nanosecond)
	if ok, err := w.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock at TIMEOUT = %v, %v; want the unknown holder reclaimed", ok, err)
	}
	if e := parseEntry(r.entryName()); e.holder.Token != w.token || w.Fence() == 0 {
		t.Fatalf("after the reclaim the entry is %q (fence %d)", e.name, w.Fence())
	}
	if err := w.Unlock(); err != nil {
		t.Fatal(err)
	}
	mustLock(t, w)
	w.Unlock()
}

// corruptField returns a well-formed held name of a holder elsewhere with
// field i (0 fence, 1 token, 2 seq, 3 since, 4 beat, 5 timeout, 6 pid,
// 7 pstart, 8 hostid, 9 host) replaced by v.
func corruptField(now time.Time, i int, v string) string {
	good := lockdir.FormatHeld(5, lockdir.NewToken(), 0, now, now, time.Second, lockdir.Identity{PID: 4242, Start: 7, HostID: "e1", Host: "elsewhere"})
	f := strings.SplitN(strings.TrimPrefix(good, "held."), ".", 10)
	f[i] = v
	return "held." + strings.Join(f, ".")
}

// Huge and corrupt holder records: Inspect, TryLock and Lock never panic,
// and a record that does not parse is an unknown holder.
func TestCorruptHolderRecords(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) // newRig's clock
	long255 := func(prefix string, fill byte) string {
		return prefix + strings.Repeat(string(fill), 255-len(prefix))
	}
	cases := map[string]string{
		"255 bytes of 9":          long255("held.", '9'),
		"255 bytes of dots":       long255("held.", '.'),
		"255 bytes, free":         long255("free.", '1'),
		"255 bytes, long host":    corruptField(now, 9, strings.Repeat("h", 255-len(corruptField(now, 9, "")))),
		"non-UTF-8 host":          corruptField(now, 9, "h\xff\xfe"),
		"non-UTF-8 token":         corruptField(now, 1, strings.Repeat("\xc3", 32)),
		"upper-case token":        corruptField(now, 1, strings.Repeat("A", 32)),
		"fence overflows uint64":  corruptField(now, 0, "18446744073709551616"),
		"fence negative":          corruptField(now, 0, "-1"),
		"seq overflows uint64":    corruptField(now, 2, "99999999999999999999"),
		"since overflows int64":   corruptField(now, 3, "9223372036854775808"),
		"beat underflows int64":   corruptField(now, 4, "-9223372036854775809"),
		"timeout overflows":       corruptField(now, 5, "9223372036854775808"),
		"timeout negative":        corruptField(now, 5, "-1000000000"),
		"timeout zero":            corruptField(now, 5, "0"),
		"pid negative":            corruptField(now, 6, "-5"),
		"pid zero":                corruptField(now, 6, "0"),
		"pid overflows int32":     corruptField(now, 6, "2147483648"),
		"pid overflows uint64":    corruptField(now, 6, "18446744073709551616"),
		"pstart overflows uint64": corruptField(now, 7, "18446744073709551616"),
		"hostid too long":         corruptField(now, 8, strings.Repeat("f", 17)),
		"hostid empty":            corruptField(now, 8, ""),
		"leading zero fence":      corruptField(now, 0, "05"),
		"plus sign":               corruptField(now, 4, "+1"),
		"missing field":           strings.TrimSuffix(corruptField(now, 9, ""), "."),
	}
	for name, entry := range cases {
		t.Run(name, func(t *testing.T) {
			if len(entry) > 255 {
				t.Fatalf("test entry is %d bytes", len(entry))
			}
			if e := parseEntry(entry); !e.holder.Unknown || e.free {
				t.Fatalf("%q parsed as %+v, want an unknown holder", entry, e)
			}
			r := newRig(t)
			if err := os.MkdirAll(filepath.Join(r.path, entry), 0o755); err != nil {
				t.Fatal(err)
			}
			garbageReclaimedAfterTimeout(t, r)
		})
	}
	// Extreme values that do parse: no panic, and sensible verdicts.
	for _, tc := range []struct {
		name  string
		entry string
		stale bool
	}{
		{"beat at the minimum int64", corruptField(now, 4, "-9223372036854775808"), true},
		{"beat at the maximum int64", corruptField(now, 4, "9223372036854775807"), false},
		{"timeout at the maximum int64", corruptField(now, 5, "9223372036854775807"), false},
		{"fence at the maximum uint64", corruptField(now, 0, "18446744073709551615"), false},
	} {
		for _, skew := range []time.Duration{0, DefaultMaxClockSkew} {
			t.Run(fmt.Sprintf("%s, skew bound %v", tc.name, skew), func(t *testing.T) {
				r := newRig(t)
				os.MkdirAll(filepath.Join(r.path, tc.entry), 0o755)
				w := r.lock(WithTimeout(time.Second), WithMaxClockSkew(skew))
				st, err := w.Status()
				if err != nil || !st.Held || st.Holder.Unknown || st.Stale != tc.stale {
					t.Fatalf("Status = %+v, %v; want held, stale %v", st, err, tc.stale)
				}
				_ = st.String()
				ok, err := w.TryLock()
				if ok != tc.stale || err != nil {
					t.Fatalf("TryLock = %v, %v; want %v", ok, err, tc.stale)
				}
				if ok {
					if w.Fence() == 0 {
						t.Fatal("fence 0 after a reclaim")
					}
					w.Unlock()
				}
			})
		}
	}
}

// A symlink at the lock path, to a directory holding a valid free lock:
// never acquired through, the target never changed.
func TestSymlinkAtPathToALock(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	tl, _ := New(target)
	mustLock(t, tl)
	tl.Unlock()
	path := filepath.Join(dir, "lock")
	os.Symlink(target, path)
	before := tree(t, target)
	l, _ := New(path)
	if err := lockAtOnce(t, l); !errors.Is(err, ErrNotLock) {
		t.Fatalf("Lock through a symlink = %v, want ErrNotLock", err)
	}
	if ok, err := l.TryLock(); ok || !errors.Is(err, ErrNotLock) {
		t.Fatalf("TryLock through a symlink = %v, %v", ok, err)
	}
	if _, err := Inspect(path); !errors.Is(err, ErrNotLock) {
		t.Fatalf("Inspect through a symlink = %v", err)
	}
	if _, err := l.Break(true); !errors.Is(err, ErrNotLock) {
		t.Fatalf("Break through a symlink = %v", err)
	}
	if after := tree(t, target); after != before {
		t.Fatalf("the symlink's target changed:\n%s\n%s", before, after)
	}
	// A planted symlink in a named-lock directory, too.
	named, _ := Named("job", WithDir(dir))
	os.Symlink(target, named.Path())
	if err := lockAtOnce(t, named); !errors.Is(err, ErrNotLock) {
		t.Fatalf("Named lock through a planted symlink = %v, want ErrNotLock", err)
	}
	if after := tree(t, target); after != before {
		t.Fatalf("the symlink's target changed:\n%s\n%s", before, after)
	}
}

// The lock directory swapped for a symlink between two steps: after this
// Lock released it (so it remembers the free entry's name), the directory
// is moved away and the path made a symlink to a directory that holds an
// entry of that very name. The next Lock must not acquire through the
// symlink nor rename anything in the target. Both ways of a transition
// are played: by path (a local filesystem) and through a descriptor of
// the lock directory (a network one: lockdir.Move's remote).
func TestSymlinkSwappedInBetweenSteps(t *testing.T) {
	for _, kind := range []fsys.Caching{fsys.Coherent, fsys.Opaque} {
		t.Run(kind.String(), func(t *testing.T) { symlinkSwappedInBetweenSteps(t, kind) })
	}
}

func symlinkSwappedInBetweenSteps(t *testing.T, kind fsys.Caching) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lock")
	target := filepath.Join(dir, "elsewhere")
	swap := func(t *testing.T, entry string) {
		t.Helper()
		if err := os.Rename(path, path+".orig"); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(target, entry), 0o755)
		os.WriteFile(filepath.Join(target, "precious"), []byte("data"), 0o644)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
	cleanup := func() {
		os.Remove(path)
		os.RemoveAll(target)
		os.RemoveAll(path + ".orig")
	}
	t.Run("before Lock", func(t *testing.T) {
		defer cleanup()
		l, _ := New(path)
		l.testCaching = &kind
		mustLock(t, l)
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		swap(t, lockdir.FreeName(l.Fence()))
		before := tree(t, target)
		// A Lock that remembers nothing lists the path and refuses it.
		fresh, _ := New(path)
		fresh.testCaching = &kind
		if err := lockAtOnce(t, fresh); !errors.Is(err, ErrNotLock) {
			t.Fatalf("fresh Lock with a symlink swapped in = %v, want ErrNotLock", err)
		}
		// The Lock that released the lock last tries its free entry first.
		err := l.Lock(context.Background())
		after := tree(t, target)
		if err == nil {
			l.Unlock()
		}
		if after != before {
			t.Errorf("Lock renamed entries in the symlink's target:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if !errors.Is(err, ErrNotLock) {
			t.Fatalf("Lock with a symlink swapped in = %v (fence %d), want ErrNotLock", err, l.Fence())
		}
	})
	t.Run("while held", func(t *testing.T) {
		defer cleanup()
		r := newRig(t)
		r.path = path
		a := r.lock(WithTimeout(3 * time.Second))
		a.testCaching = &kind
		mustLock(t, a)
		swap(t, r.entryName()) // the attacker copies the held name
		before := tree(t, target)
		r.clk.Add(time.Second)
		waitFor(t, hooks[a].beats, "heartbeat")
		if after := tree(t, target); after != before {
			t.Errorf("the heartbeat renamed entries in the symlink's target:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		select {
		case <-a.Lost():
		default:
			t.Errorf("Lost not closed after the heartbeat found its directory replaced by a symlink")
		}
		before = tree(t, target)
		err := a.Unlock()
		if after := tree(t, target); after != before {
			t.Errorf("Unlock renamed entries in the symlink's target:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if !errors.Is(err, ErrLost) {
			t.Fatalf("Unlock after its directory became a symlink = %v, want ErrLost", err)
		}
	})
}

// A waiter whose clock jumps back still reclaims a holder that stopped
// refreshing (here: on another host, so no pid check) once it has seen
// the entry unchanged for TIMEOUT on its own clock after the jump: the
// jump must not add its size to the wait.
func TestClockJumpBackWaiterStillReclaims(t *testing.T) {
	r := newRig(t)
	now := r.clk.Now()
	os.MkdirAll(filepath.Join(r.path, lockdir.FormatHeld(5, lockdir.NewToken(), 0, now, now, time.Second, lockdir.Identity{PID: 4242, HostID: "e1", Host: "elsewhere"})), 0o755)
	w := r.lock()
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock of a fresh lock = %v, %v", ok, err)
	}
	r.clk.Set(now.Add(-time.Hour))
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock right after the jump = %v, %v", ok, err)
	}
	r.clk.Add(time.Second)
	ok, err := w.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		st, _ := w.Status()
		t.Fatalf("after its clock jumped back 1h, the waiter saw the entry unchanged for TIMEOUT (1s) and still did not reclaim it (status %v); it would wait 1h more", st)
	}
	w.Unlock()
}

// A waiter whose clock jumps forward reclaims a holder that stopped
// refreshing at once (its TIMEOUT has passed on the waiter's clock), and
// one whose process is alive on this host only by that judgement; the
// holder is told at its next heartbeat.
func TestClockJumpForwardWaiterReclaimsAndHolderIsTold(t *testing.T) {
	r := newRig(t)
	a, w := r.lock(WithTimeout(3*time.Second)), r.lock()
	mustLock(t, a)
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock of a fresh lock = %v, %v", ok, err)
	}
	pause(a)
	r.clk.Set(r.clk.Now().Add(time.Hour))
	if ok, err := w.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock an hour later = %v, %v", ok, err)
	}
	a.heartbeat()
	waitFor(t, hooks[a].beats, "heartbeat")
	waitFor(t, a.Lost(), "the holder to learn of the loss")
	if err := a.Unlock(); !errors.Is(err, ErrLost) {
		t.Fatalf("Unlock = %v, want ErrLost", err)
	}
	if err := w.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// A holder whose clock runs an hour ahead: Inspect shows it fresh, and a
// waiter reclaims it only after TIMEOUT seen unchanged on its own clock,
// counted again from every heartbeat it sees.
func TestFutureHolderKeptWhileRefreshing(t *testing.T) {
	r := newRig(t)
	future := r.clk.Now().Add(time.Hour)
	id := lockdir.Identity{PID: 4242, HostID: "e1", Host: "ahead"}
	token := lockdir.NewToken()
	cur := lockdir.FormatHeld(7, token, 0, future, future, time.Second, id)
	os.MkdirAll(filepath.Join(r.path, cur), 0o755)
	w := r.lock(WithTimeout(time.Hour)) // the holder's TIMEOUT rules, not ours
	st, err := w.Status()
	if err != nil || !st.Held || st.Stale || st.Age != -time.Hour {
		t.Fatalf("Status of a future holder = %+v, %v", st, err)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		if ok, err := w.TryLock(); ok || err != nil {
			t.Fatalf("beat %d: TryLock = %v, %v", seq, ok, err)
		}
		r.clk.Add(900 * time.Millisecond)
		next := lockdir.FormatHeld(7, token, seq, future, future.Add(time.Duration(seq)*time.Second), time.Second, id)
		if err := os.Rename(filepath.Join(r.path, cur), filepath.Join(r.path, next)); err != nil {
			t.Fatal(err)
		}
		cur = next
	}
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock after the last beat = %v, %v", ok, err)
	}
	r.clk.Add(time.Second - time.Nanosecond)
	if ok, err := w.TryLock(); ok || err != nil {
		t.Fatalf("TryLock before TIMEOUT since the last beat = %v, %v", ok, err)
	}
	r.clk.Add(time.Nanosecond)
	if ok, err := w.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock at TIMEOUT since the last beat = %v, %v", ok, err)
	}
	if w.Fence() != 8 {
		t.Fatalf("fence %d, want 8", w.Fence())
	}
	w.Unlock()
}

// In a setgid directory of a shared group, a lock made with a group mode
// keeps the group and the setgid bit down to its queue, so that every
// member can queue (the chmod that undoes the umask once cleared it).
func TestSetgidGroupDirectoryKeepsTheGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a directory to another group needs root")
	}
	const gid = 4242
	parent := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(parent, -1, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o770|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	l, err := New(filepath.Join(parent, "lock"), WithPermissions(0o770))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	for _, p := range []string{l.Path(), filepath.Join(l.Path(), lockdir.QueueDir)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Gid != gid || fi.Mode()&fs.ModeSetgid == 0 || fi.Mode().Perm() != 0o770 {
			t.Errorf("%s: group %d, mode %v; want group %d, setgid, 0770", p, st.Gid, fi.Mode(), gid)
		}
	}
}
