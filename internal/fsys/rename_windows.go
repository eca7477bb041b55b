package fsys

import (
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// renameExclusive renames from to to, failing with ERROR_ALREADY_EXISTS
// (fs.ErrExist) if to exists, directory or file.
//
// Windows renames an open handle, not a name: MoveFileEx opens the source
// by name, sharing delete with anyone, and then renames what it opened. Two
// processes renaming one source name at once can then both open it, and
// the second rename moves the file the first already renamed: both win,
// and a lock would have two holders (what smbnetfs does across SMB). So
// the source is opened here without FILE_SHARE_DELETE: while one rename
// holds it, another's open is refused with a sharing violation (a refusal
// that passes: retried, then it finds the name gone), on NTFS and, since
// the server checks share modes for all its clients, on an SMB share.
// The rename is then of that handle, relative to the directory's own
// handle (both names are in one directory), and never replaces: an
// existing target is STATUS_OBJECT_NAME_COLLISION. Names in two
// directories take MoveFileEx without MOVEFILE_REPLACE_EXISTING.
func renameExclusive(from, to string) error {
	err := renameByHandle(from, to)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

func renameByHandle(from, to string) error {
	dir := filepath.Dir(from)
	if filepath.Dir(to) != dir {
		f, err := windows.UTF16PtrFromString(LongPath(from))
		if err != nil {
			return err
		}
		t, err := windows.UTF16PtrFromString(LongPath(to))
		if err != nil {
			return err
		}
		return windows.MoveFileEx(f, t, 0)
	}
	src, err := open(from, windows.DELETE|windows.SYNCHRONIZE, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(src)
	root, err := open(dir, windows.FILE_TRAVERSE|windows.SYNCHRONIZE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(root)
	name, err := windows.UTF16FromString(filepath.Base(to))
	if err != nil {
		return err
	}
	name = name[:len(name)-1] // no NUL: the length is given
	// FILE_RENAME_INFORMATION: ReplaceIfExists (a BOOLEAN, padded to 8),
	// RootDirectory, FileNameLength in bytes, FileName.
	const nameAt = 20
	buf := make([]uint64, (nameAt+2*len(name)+7)/8+1) // 8-aligned
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	*(*windows.Handle)(unsafe.Pointer(&b[8])) = root
	*(*uint32)(unsafe.Pointer(&b[16])) = uint32(2 * len(name))
	copy(unsafe.Slice((*uint16)(unsafe.Pointer(&b[nameAt])), len(name)), name)
	var iosb windows.IO_STATUS_BLOCK
	// At least the structure's own size (24 bytes, FileName[1] padded):
	// a shorter length, a name of one character, is STATUS_INVALID_PARAMETER.
	n := max(nameAt+2*len(name), 24)
	err = windows.NtSetInformationFile(src, &iosb, &b[0], uint32(n), windows.FileRenameInformation)
	if st, ok := err.(windows.NTStatus); ok {
		return st.Errno()
	}
	return err
}

// open opens the file or directory at path itself (not a reparse
// point's target) with access, sharing share.
func open(path string, access, share uint32) (windows.Handle, error) {
	p, err := windows.UTF16PtrFromString(LongPath(path))
	if err != nil {
		return 0, err
	}
	return windows.CreateFile(p, access, share, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_BACKUP_SEMANTICS|windows.FILE_FLAG_OPEN_REPARSE_POINT, 0)
}

// renameEntry is renameExclusive: Windows has the exclusive rename.
func renameEntry(from, to string) error { return renameExclusive(from, to) }

// LongPath gives an absolute path beyond MAX_PATH its \\?\ form (\\?\UNC\
// for a share), which the Windows calls made here directly need unless
// long paths are enabled (the os package does the same for its own).
func LongPath(p string) string {
	const short = 248 // CreateDirectory's limit, the lowest
	switch {
	case len(p) < short, strings.HasPrefix(p, `\\?\`), !filepath.IsAbs(p):
		return p
	case strings.HasPrefix(p, `\\`):
		return `\\?\UNC\` + p[2:]
	}
	return `\\?\` + filepath.Clean(p)
}
