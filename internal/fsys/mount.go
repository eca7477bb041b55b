package fsys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// UnsafeEnv is the variable that turns Unsafe's check off when set to
// "allow".
const UnsafeEnv = "DLOCK_UNSAFE_FS"

// ErrUnsafe is what Unsafe's errors match: dlock's ErrUnsafe.
var ErrUnsafe = errors.New("filesystem where no lock can be safe")

// unsafeKind describes a FUSE filesystem where dlock cannot be safe, in
// the user's words.
type unsafeKind struct {
	what    string                  // "an smbnetfs mount (...)"
	why     func(sub string) string // what goes wrong, for a path sub below the mount point
	instead func(sub string) string // what to use instead
}

// fixed returns a func that ignores the path below the mount point.
func fixed(s string) func(string) string { return func(string) string { return s } }

const (
	whySMB     = "two renames of one name can both succeed there (an SMB client on libsmbclient renames the directory it opened, not a name)"
	insteadSMB = "mount the share with the kernel's SMB client (mount -t cifs) instead"
)

// unsafeKinds maps the FUSE daemon's name, as the mount table gives it
// (type "fuse.NAME"), to why dlock refuses it. Each is a client of a
// protocol or a library whose rename does not act on an exact name:
//
//   - smbnetfs: measured (scripts/probe on scripts/smbfs.sh): both renames
//     won in 48 of 1,000 rounds. libsmbclient opens the source, then
//     renames the open handle in a second request; a client that opened
//     free.E before another renamed it renames the other's entry.
//   - fusesmb: a FUSE SMB client on the same library and calls.
//   - gvfsd-fuse: GNOME's one FUSE mount for every gvfs backend
//     (/run/user/UID/gvfs). Its SMB backends (smb-share:, smb-server:) are
//     libsmbclient. All of it is refused, not just the SMB paths: the other
//     backends (FTP, WebDAV, MTP, AFP, cloud drives) were not tried, several
//     cannot rename a directory atomically, and each one has a direct
//     alternative that was (sshfs, a kernel NFS or SMB mount).
//   - kio-fuse: KDE's FUSE bridge to KIO, whose smb worker is libsmbclient;
//     refused whole for the same reason as gvfs.
//   - s3fs: an S3 bucket; a rename is a server-side copy and a delete, and
//     a mkdir checks, then writes, so neither is a compare-and-swap.
var unsafeKinds = map[string]unsafeKind{
	"smbnetfs": {what: "an smbnetfs mount (FUSE, on libsmbclient)", why: fixed(whySMB), instead: fixed(insteadSMB)},
	"fusesmb":  {what: "a fusesmb mount (FUSE, on libsmbclient)", why: fixed(whySMB), instead: fixed(insteadSMB)},
	"gvfsd-fuse": {
		what: "a GNOME gvfs mount (FUSE: gvfsd-fuse)",
		why: func(sub string) string {
			if strings.HasPrefix(sub, "smb-") {
				return "its SMB backend is libsmbclient, where two renames of one name can both succeed"
			}
			return "gvfs hands each rename to a backend that may not rename atomically (its SMB backend does not)"
		},
		instead: func(sub string) string {
			switch {
			case strings.HasPrefix(sub, "smb-"):
				return insteadSMB
			case strings.HasPrefix(sub, "sftp:"):
				return "mount the host with sshfs instead"
			}
			return "mount the server with the kernel's client (NFS, or SMB with mount -t cifs) or with sshfs instead"
		},
	},
	"kio-fuse": {
		what: "a KDE kio-fuse mount (FUSE, on KIO)",
		why: func(sub string) string {
			if sub == "smb" || strings.HasPrefix(sub, "smb/") {
				return "its SMB worker is libsmbclient, where two renames of one name can both succeed"
			}
			return "KIO hands each rename to a worker that may not rename atomically (its SMB worker does not)"
		},
		instead: func(sub string) string {
			switch {
			case sub == "smb" || strings.HasPrefix(sub, "smb/"):
				return insteadSMB
			case sub == "sftp" || strings.HasPrefix(sub, "sftp/"):
				return "mount the host with sshfs instead"
			}
			return "mount the server with the kernel's client (NFS, or SMB with mount -t cifs) or with sshfs instead"
		},
	},
	"s3fs": {
		what:    "an s3fs mount (FUSE, an S3 bucket)",
		why:     fixed("a rename there is a copy and a delete, and mkdir does not check and create in one step"),
		instead: fixed("keep the lock on a filesystem with an atomic rename (NFS, a kernel SMB mount, a local disk) instead"),
	},
}

// mount is one line of the mount table.
type mount struct {
	point  string // where it is mounted, unescaped
	fstype string // e.g. "ext4", "fuse.smbnetfs"
	source string // e.g. "/dev/sda1", "smbnetfs"
}

// byInode names the FUSE daemons known to resolve each request by the
// inode it names (GlusterFS by its gfid, CephFS by its inode number), as
// the kernel's NFS client does by file handle. Every other FUSE daemon is
// taken to resolve it by path (sshfs sends the server a path, which the
// server walks again; so do libfuse's path-based filesystems).
var byInode = map[string]bool{"glusterfs": true, "ceph-fuse": true}

// ByPath reports whether the server of path's filesystem resolves every
// request by a path name (sshfs): there a descriptor of the lock directory
// pins nothing, a symlink swapped in for it at the server is followed by
// the server, and only an operation that reaches the server can see it.
// False for local and kernel network filesystems (NFS works by file
// handle) and for FUSE daemons known to work by inode; true for a FUSE
// mount whose daemon is unknown, or when the mount table cannot be read.
func ByPath(path string) bool {
	m, fuse, known := fuseMountOf(path)
	return fuse && (!known || resolvesByPath(m))
}

// resolvesByPath reports whether the daemon of the FUSE mount m is taken
// to resolve each request by path (every one not known to use inodes).
func resolvesByPath(m mount) bool { return !byInode[fuseName(m)] }

// fuseMountOf is the FUSE mount holding path, symlinks in the part of it
// that exists followed: fuse is false when path is not on FUSE, known
// false when the mount table could not be read.
func fuseMountOf(path string) (m mount, fuse, known bool) {
	real, existing := resolve(path)
	if !maybeFUSE(existing) {
		return m, false, true // statfs said so
	}
	mounts, err := mountTable()
	if err != nil || len(mounts) == 0 {
		return m, true, false // nothing known: Linux without /proc, or another OS
	}
	m, known = mountOf(mounts, real)
	return m, true, known
}

// Unsafe returns an error matching ErrUnsafe when path, a lock's
// absolute path (which need not exist), is on a filesystem where no lock
// can be safe, and nil otherwise, or when the mount table cannot be read.
// Symlinks in the part of path that exists are followed first, so a
// symlink into such a mount is seen. It does no I/O on the lock itself.
func Unsafe(path string) error {
	if os.Getenv(UnsafeEnv) == "allow" {
		return nil
	}
	real, existing := resolve(path)
	if !maybeFUSE(existing) {
		return nil // every filesystem refused here is a FUSE one
	}
	mounts, err := mountTable()
	if err != nil || len(mounts) == 0 {
		return nil // nothing known: Linux without /proc, or another OS
	}
	return checkMounts(mounts, path, real)
}

// checkMounts is Unsafe on a given mount table; real is path with its
// symlinks resolved.
func checkMounts(mounts []mount, path, real string) error {
	m, ok := mountOf(mounts, real)
	if !ok {
		return nil
	}
	kind, ok := unsafeKinds[fuseName(m)]
	if !ok {
		return nil
	}
	sub := strings.TrimPrefix(strings.TrimPrefix(real, m.point), "/")
	where := path
	if real != path {
		where = fmt.Sprintf("%s (%s)", path, real)
	}
	return fmt.Errorf("dlock: %s is on %s, %s, a %w: %s; %s",
		where, m.point, kind.what, ErrUnsafe, kind.why(sub), kind.instead(sub))
}

// resolve follows the symlinks of the longest part of path that exists,
// and appends the rest; existing is that part, resolved.
func resolve(path string) (real, existing string) {
	path = filepath.Clean(path)
	rest := ""
	for dir := path; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest), r
		}
		if filepath.Dir(dir) == dir {
			return path, dir
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// fuseName is the daemon's name of a FUSE mount: the subtype of
// "fuse.NAME" (or "fuseblk.NAME"), or, for a plain "fuse" mount made
// without a subtype, its source, which libfuse sets to the program's name.
// It is "" for other filesystems.
func fuseName(m mount) string {
	for _, t := range []string{"fuse.", "fuseblk."} {
		if name, ok := strings.CutPrefix(m.fstype, t); ok {
			return name
		}
	}
	if m.fstype == "fuse" || m.fstype == "fuseblk" {
		return filepath.Base(m.source)
	}
	return ""
}

// mountOf returns the mount holding path (absolute and clean): the one with
// the longest mount point that is path or one of its parents. Of mounts on
// the same point the last one listed is the one on top.
func mountOf(mounts []mount, path string) (mount, bool) {
	var best mount
	found := false
	for _, m := range mounts {
		if !under(path, m.point) {
			continue
		}
		if !found || len(m.point) >= len(best.point) {
			best, found = m, true
		}
	}
	return best, found
}

// under reports whether path is dir or below it.
func under(path, dir string) bool {
	if dir == "/" || path == dir {
		return true
	}
	return strings.HasPrefix(path, dir) && path[len(dir)] == '/'
}

// parseMountinfo reads the text of /proc/self/mountinfo (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Field 5 is the mount point; after the optional fields and a "-" come the
// type and the source. Lines it cannot read are skipped.
func parseMountinfo(text string) []mount {
	var mounts []mount
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		mounts = append(mounts, mount{
			point:  unescapeMount(f[4]),
			fstype: unescapeMount(f[sep+1]),
			source: unescapeMount(f[sep+2]),
		})
	}
	return mounts
}

// unescapeMount undoes the kernel's escapes in the mount table: a space,
// tab, newline or backslash is written as a backslash and three octal
// digits (\040, \011, \012, \134).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
