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

// lookBroken is set once statx or open(O_PATH) was refused (kernels
// before 4.11, some seccomp filters), renameat2Broken once renameat2 was
// (before 3.15): checkAndRename then leaves the work to move.
var lookBroken, renameat2Broken atomic.Bool

// checkAndRename is what move does on every transition: isRealDir(dir),
// then renameEntry(dir/from, dir/to), as walk says (see Walk). Paths are
// NUL-terminated copies in a buffer on the stack (the portable calls
// allocate for every path they are given, five times per transition),
// laid out as dir, dir/from, dir/to. Done is false when it did nothing
// (paths too long, a call refused): then move takes the portable calls.
//
// Locally (WalkEach) a statx of dir and a renameat2 of the two paths are
// cheaper than opening a descriptor and closing it. Through sshfs the
// statx walked dir and asked for its attributes, and the rename walked
// dir again for each of its paths: 10 operations at the server per
// transition (coherent caching), where the open, the statx of the
// descriptor and the rename relative to it cost 6 (WalkOnceAsk).
func checkAndRename(dir, from, to string, walk Walk) (r Renamed) {
	var buf [1024]byte
	if lookBroken.Load() || renameat2Broken.Load() || 3*len(dir)+len(from)+len(to)+5 > len(buf) {
		return r
	}
	n := copy(buf[:], dir) + 1 // dir, NUL
	src := n
	n += copy(buf[n:], dir)
	buf[n] = '/'
	n += 1 + copy(buf[n+1:], from) + 1 // dir/from, NUL
	dst := n
	n += copy(buf[n:], dir)
	buf[n] = '/'
	copy(buf[n+1:], to) // dir/to, NUL (buf is zeroed)

	dirfd := unix.AT_FDCWD // renames by path
	if walk == WalkEach {
		if r = statDir(dir, unix.AT_FDCWD, &buf[0], 0); !r.IsDir {
			return r
		}
	} else {
		var e syscall.Errno
		if dirfd, e = openDir(&buf[0]); e != 0 {
			return lookRefused(dir, e)
		}
		defer syscall.Close(dirfd)
		if walk == WalkOnceAsk {
			// buf[len(dir)] is a NUL: the empty path of the descriptor itself.
			if r = statDir(dir, dirfd, &buf[len(dir)], unix.AT_EMPTY_PATH|unix.AT_STATX_FORCE_SYNC); !r.IsDir {
				return r
			}
		}
		src, dst = src+len(dir)+1, dst+len(dir)+1 // from and to, relative to dirfd
	}
	r = Renamed{Done: true, IsDir: true}
	e := renameAt(dirfd, &buf[src], &buf[dst])
	switch e {
	case 0:
		return r
	case unix.ENOSYS: // no renameat2 at all
		renameat2Broken.Store(true)
		return Renamed{}
	}
	r.Err = &os.LinkError{Op: "rename", Old: dir + "/" + from, New: dir + "/" + to, Err: e}
	if e != unix.EEXIST && e != unix.ENOTEMPTY {
		// Did it take effect, though the answer says not? Look through
		// the same descriptor (or by path) right away.
		var st unix.Stat_t
		r.Landed = unix.Fstatat(dirfd, unix.ByteSliceToString(buf[dst:]), &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	}
	return r
}

// statDir is isRealDir of the NUL-terminated path at p, relative to
// dirfd, whose string is dir, with statx's flags besides
// AT_SYMLINK_NOFOLLOW: Done and IsDir when it is a directory.
func statDir(dir string, dirfd int, p *byte, flags int) Renamed {
	var stx unix.Statx_t
	_, _, e := syscall.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		uintptr(unix.AT_SYMLINK_NOFOLLOW|flags), unix.STATX_TYPE, uintptr(unsafe.Pointer(&stx)), 0)
	switch {
	case e == unix.ENOSYS || e == unix.EPERM:
		lookBroken.Store(true)
		return Renamed{}
	case e != 0:
		return Renamed{Done: true, StatErr: &os.PathError{Op: "lstat", Path: dir, Err: e}}
	}
	return Renamed{Done: true, IsDir: stx.Mode&unix.S_IFMT == unix.S_IFDIR}
}

// openDir opens the NUL-terminated path at p with
// O_PATH|O_DIRECTORY|O_NOFOLLOW: a descriptor that names the directory
// there for *at calls, reads nothing, and is refused for a symlink or a
// file.
func openDir(p *byte) (int, syscall.Errno) {
	cwd := unix.AT_FDCWD
	fd, _, e := syscall.Syscall6(unix.SYS_OPENAT, uintptr(cwd), uintptr(unsafe.Pointer(p)),
		unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0, 0, 0)
	return int(fd), e
}

// lookRefused is what checkAndRename reports when openDir refused dir.
func lookRefused(dir string, e syscall.Errno) Renamed {
	switch e {
	case unix.ENOTDIR, unix.ELOOP:
		// A symlink or a file at dir, or above it: an lstat tells which.
		if isDir, err := isRealDir(dir); !isDir {
			return Renamed{Done: true, StatErr: err}
		}
		return Renamed{} // a directory again: the portable calls look afresh
	case unix.ENOSYS, unix.EPERM: // a seccomp filter, most likely
		lookBroken.Store(true)
		return Renamed{}
	}
	return Renamed{Done: true, StatErr: &os.PathError{Op: "open", Path: dir, Err: e}}
}

// renameAt renames the NUL-terminated from to to, both relative to
// dirfd, with RENAME_NOREPLACE until a filesystem refused it, and then
// plainly (renameat2 with no flags: arm64 has no renameat).
func renameAt(dirfd int, from, to *byte) syscall.Errno {
	flags := uintptr(unix.RENAME_NOREPLACE)
	if noReplaceBroken.Load() {
		flags = 0
	}
	for {
		_, _, e := syscall.Syscall6(unix.SYS_RENAMEAT2, uintptr(dirfd), uintptr(unsafe.Pointer(from)),
			uintptr(dirfd), uintptr(unsafe.Pointer(to)), flags, 0)
		if flags == 0 || e != unix.EINVAL && e != unix.ENOSYS && e != unix.ENOTSUP {
			return e
		}
		// RENAME_NOREPLACE refused (FUSE and NFS servers may): plain
		// rename from now on, whose safety rests on the protocol's
		// never-reused names alone.
		noReplaceBroken.Store(true)
		flags = 0
	}
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
