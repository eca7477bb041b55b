package fsys

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noReplaceBroken is set once a filesystem refused RENAME_NOREPLACE
// (FUSE and NFS servers may); from then on renameEntry uses plain rename,
// whose safety rests on the protocol's never-reused names alone.
var noReplaceBroken atomic.Bool

// renameExclusive renames from to to, failing with EEXIST if to exists,
// even as an empty directory, which plain rename(2) would replace.
func renameExclusive(from, to string) error {
	if noReplaceBroken.Load() {
		return ErrNoExclusive
	}
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP) {
		noReplaceBroken.Store(true)
		return ErrNoExclusive
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// statxBroken is set once statx was refused (kernels before 4.11, some
// seccomp filters): checkAndRename then leaves the work to move.
var statxBroken atomic.Bool

// checkAndRename is what move does on every transition, isRealDir(dir)
// and then renameEntry(dir/from, dir/to), in two system calls on
// NUL-terminated copies of the paths in a buffer on the stack: the
// portable calls allocate for every path they are given, five times per
// transition. done is false when it did nothing (paths too long, statx
// or RENAME_NOREPLACE refused): then move takes the portable calls.
func checkAndRename(dir, from, to string) (isDir bool, statErr, err error, done bool) {
	var buf [1024]byte
	if statxBroken.Load() || noReplaceBroken.Load() || 3*len(dir)+len(from)+len(to)+5 > len(buf) {
		return false, nil, nil, false
	}
	n := copy(buf[:], dir) + 1 // dir, NUL
	src := n
	n += copy(buf[n:], dir)
	buf[n] = '/'
	n += 1 + copy(buf[n+1:], from) + 1 // dir/from, NUL
	dst := n
	n += copy(buf[n:], dir)
	buf[n] = '/'
	n += 1 + copy(buf[n+1:], to) // dir/to, NUL (buf is zeroed)

	cwd := unix.AT_FDCWD // a variable: the constant is negative
	var stx unix.Statx_t
	_, _, e := syscall.Syscall6(unix.SYS_STATX, uintptr(cwd), uintptr(unsafe.Pointer(&buf[0])),
		unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, uintptr(unsafe.Pointer(&stx)), 0)
	switch {
	case e == unix.ENOSYS || e == unix.EPERM:
		statxBroken.Store(true)
		return false, nil, nil, false
	case e != 0:
		return false, &os.PathError{Op: "lstat", Path: dir, Err: e}, nil, true
	case stx.Mode&unix.S_IFMT != unix.S_IFDIR:
		return false, nil, nil, true
	}
	_, _, e = syscall.Syscall6(unix.SYS_RENAMEAT2, uintptr(cwd), uintptr(unsafe.Pointer(&buf[src])),
		uintptr(cwd), uintptr(unsafe.Pointer(&buf[dst])), unix.RENAME_NOREPLACE, 0)
	switch {
	case e == 0:
		return true, nil, nil, true
	case e == unix.EINVAL || e == unix.ENOSYS || e == unix.ENOTSUP:
		noReplaceBroken.Store(true)
		return false, nil, nil, false
	}
	return true, nil, &os.LinkError{Op: "rename", Old: string(buf[src : dst-1]), New: string(buf[dst:n]), Err: e}, true
}

// direntBufs holds getdents buffers: a listing is on every attempt, and
// os.File would allocate 8 KiB for each (and ask fcntl for the flags).
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}

// readNames lists the directory at path without following a symlink there:
// a symlink planted at the lock's path is an error (ELOOP or ENOTDIR),
// never a lock.
func readNames(path string) ([]string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	names := make([]string, 0, 8)
	for {
		n, err := unix.Getdents(fd, *bp)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &os.PathError{Op: "readdirent", Path: path, Err: err}
		case n <= 0:
			return names, nil
		}
		_, _, names = unix.ParseDirent((*bp)[:n], -1, names) // without . and ..
	}
}
