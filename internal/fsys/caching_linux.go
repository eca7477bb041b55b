package fsys

import "golang.org/x/sys/unix"

// cachingOf asks statfs which filesystem dir is on. NFS and CephFS
// revalidate a directory on open (Ceph's capabilities keep it coherent
// besides); FUSE clients (GlusterFS, sshfs), SMB's and the others keep
// caches of their own.
func cachingOf(dir string) Caching {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return Unknown
	}
	switch uint32(st.Type) {
	case unix.NFS_SUPER_MAGIC, unix.CEPH_SUPER_MAGIC:
		return CloseToOpen
	case unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC,
		unix.FUSE_SUPER_MAGIC, unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC,
		unix.V9FS_MAGIC, unix.CODA_SUPER_MAGIC, unix.NCP_SUPER_MAGIC, unix.OCFS2_SUPER_MAGIC,
		0x01161970 /* GFS2 */, 0x0bd00bd0 /* Lustre */, 0x47504653 /* GPFS */, 0x013111a8 /* IBRIX */ :
		return Opaque
	}
	return Coherent
}
