package fsys

import (
	"errors"
	"strings"
	"testing"
)

// A mount table as /proc/self/mountinfo gives it: a root, an SMB share
// through smbnetfs, an over-mount, a name with a space (escaped), gvfs,
// an old libfuse mount without a subtype, and lines to skip.
const mountinfoFixture = `22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
25 22 0:21 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw
50 22 0:44 / /mnt/share rw,nosuid,nodev,relatime - fuse.smbnetfs smbnetfs rw,user_id=0,group_id=0,allow_other
51 22 0:45 / /mnt/share2 rw,nosuid,nodev,relatime shared:7 master:3 - fuse.sshfs root@10.0.0.1:/export rw,user_id=0,group_id=0
52 50 0:46 / /mnt/share/local rw,relatime - ext4 /dev/vdb rw
53 22 0:47 / /mnt/my\040share rw,relatime - fuse.smbnetfs smbnetfs rw
54 22 0:48 / /mnt/back\134slash rw,relatime - cifs //nas/data rw,vers=3.0
55 22 0:49 / /run/user/1000/gvfs rw,nosuid,nodev,relatime - fuse.gvfsd-fuse gvfsd-fuse rw,user_id=1000,group_id=1000
56 22 0:50 / /mnt/old rw,relatime - fuse smbnetfs rw
57 22 0:51 / /mnt/stack rw,relatime - fuse.smbnetfs smbnetfs rw
58 22 0:52 / /mnt/stack rw,relatime - nfs4 nas:/export rw
59 22 0:53 / /mnt/bucket rw,relatime - fuse.s3fs s3fs rw
a line that is not one
60 22 0:54 / /mnt/broken rw - 
`

func TestParseMountinfo(t *testing.T) {
	mounts := parseMountinfo(mountinfoFixture)
	if len(mounts) != 12 {
		t.Fatalf("%d mounts, want 12: %+v", len(mounts), mounts)
	}
	want := map[int]mount{
		0:  {"/", "ext4", "/dev/vda"},
		2:  {"/mnt/share", "fuse.smbnetfs", "smbnetfs"},
		3:  {"/mnt/share2", "fuse.sshfs", "root@10.0.0.1:/export"},
		5:  {"/mnt/my share", "fuse.smbnetfs", "smbnetfs"},
		6:  {`/mnt/back\slash`, "cifs", "//nas/data"},
		8:  {"/mnt/old", "fuse", "smbnetfs"},
		11: {"/mnt/bucket", "fuse.s3fs", "s3fs"},
	}
	for i, w := range want {
		if mounts[i] != w {
			t.Errorf("mount %d = %+v, want %+v", i, mounts[i], w)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:             "/plain",
		`/a\040b`:            "/a b",
		`/tab\011nl\012`:     "/tab\tnl\n",
		`/back\134slash`:     `/back\slash`,
		`/not\04`:            `/not\04`,
		`/not\089`:           `/not\089`,
		`/end\`:              `/end\`,
		`/two\040\040spaces`: "/two  spaces",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountOf(t *testing.T) {
	mounts := parseMountinfo(mountinfoFixture)
	for path, want := range map[string]string{
		"/":                             "/",
		"/home/me/locks/job":            "/",
		"/mnt/share":                    "/mnt/share",
		"/mnt/share/locks/job":          "/mnt/share",
		"/mnt/share2/locks/job":         "/mnt/share2", // not under /mnt/share
		"/mnt/sharex":                   "/",
		"/mnt/share/local/job":          "/mnt/share/local",
		"/mnt/my share/job":             "/mnt/my share",
		"/run/user/1000/gvfs/smb-share": "/run/user/1000/gvfs",
	} {
		m, ok := mountOf(mounts, path)
		if !ok || m.point != want {
			t.Errorf("mountOf(%q) = %q, %v; want %q", path, m.point, ok, want)
		}
	}
	// Two mounts on one point: the later one is on top.
	if m, _ := mountOf(mounts, "/mnt/stack/job"); m.fstype != "nfs4" {
		t.Errorf("mountOf(/mnt/stack/job) = %+v, want the nfs4 mount on top", m)
	}
	if _, ok := mountOf(nil, "/x"); ok {
		t.Error("mountOf found a mount in an empty table")
	}
}

func TestCheckMounts(t *testing.T) {
	mounts := parseMountinfo(mountinfoFixture)
	safe := []string{
		"/home/me/locks/job",
		"/dev/shm/job",
		"/mnt/share2/locks/job",     // sshfs
		"/mnt/share/local/job",      // ext4 mounted inside the share
		`/mnt/back\slash/locks/job`, // kernel SMB
		"/mnt/stack/job",            // NFS over an smbnetfs mount
	}
	for _, p := range safe {
		if err := checkMounts(mounts, p, p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	unsafe := map[string][]string{
		"/mnt/share/locks/job": {"/mnt/share/locks/job is on /mnt/share, an smbnetfs mount (FUSE, on libsmbclient)",
			"two renames of one name can both succeed", "mount -t cifs"},
		"/mnt/share":        {"is on /mnt/share, an smbnetfs mount"},
		"/mnt/my share/job": {"/mnt/my share/job is on /mnt/my share, an smbnetfs"},
		"/mnt/old/job":      {"is on /mnt/old, an smbnetfs mount"},
		"/run/user/1000/gvfs/smb-share:server=nas,share=data/locks/job": {"a GNOME gvfs mount",
			"its SMB backend is libsmbclient", "mount -t cifs"},
		"/run/user/1000/gvfs/sftp:host=web1/srv/locks/job": {"a GNOME gvfs mount", "sshfs instead"},
		"/run/user/1000/gvfs/ftp:host=files/job":           {"a GNOME gvfs mount", "may not rename atomically"},
		"/mnt/bucket/locks/job":                            {"an s3fs mount", "copy and a delete"},
	}
	for p, wants := range unsafe {
		err := checkMounts(mounts, p, p)
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s: %v, want ErrUnsafe", p, err)
			continue
		}
		for _, w := range append(wants, "dlock: "+p+" is on ", "a filesystem where no lock can be safe") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", p, err, w)
			}
		}
	}
	// A symlink into the share: both names are given.
	err := checkMounts(mounts, "/srv/locks/job", "/mnt/share/locks/job")
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "/srv/locks/job (/mnt/share/locks/job) is on /mnt/share") {
		t.Errorf("through a symlink: %v", err)
	}
}

func TestFuseName(t *testing.T) {
	for m, want := range map[mount]string{
		{fstype: "fuse.smbnetfs", source: "smbnetfs"}: "smbnetfs",
		{fstype: "fuse", source: "smbnetfs"}:          "smbnetfs",
		{fstype: "fuse", source: "/usr/bin/smbnetfs"}: "smbnetfs",
		{fstype: "fuseblk.ntfs-3g", source: "/dev/x"}: "ntfs-3g",
		{fstype: "ext4", source: "smbnetfs"}:          "",
		{fstype: "cifs", source: "//nas/data"}:        "",
	} {
		if got := fuseName(m); got != want {
			t.Errorf("fuseName(%+v) = %q, want %q", m, got, want)
		}
	}
}

func TestUnsafeFSEscapeHatch(t *testing.T) {
	t.Setenv(UnsafeEnv, "allow")
	if err := Unsafe("/any/path"); err != nil {
		t.Fatal(err)
	}
}

func TestUnsafeFSHere(t *testing.T) {
	// t.TempDir is on a local filesystem here: nothing to refuse, and a
	// path that does not exist yet resolves through its parent.
	dir := t.TempDir()
	if err := Unsafe(dir + "/not/yet/a/lock"); err != nil {
		t.Fatal(err)
	}
}

// Which FUSE daemons a transition asks the server itself about the lock
// directory (WalkOnceAsk): all but those known to resolve by inode.
func TestResolvesByPath(t *testing.T) {
	for _, c := range []struct {
		m    mount
		want bool
	}{
		{mount{fstype: "fuse.sshfs", source: "root@host:/srv"}, true},
		{mount{fstype: "fuse.rclone", source: "remote:"}, true},
		{mount{fstype: "fuse", source: "/usr/bin/someday"}, true},
		{mount{fstype: "fuse.glusterfs", source: "host:/vol"}, false},
		{mount{fstype: "fuse", source: "ceph-fuse"}, false},
	} {
		if got := resolvesByPath(c.m); got != c.want {
			t.Errorf("resolvesByPath(%+v) = %v, want %v", c.m, got, c.want)
		}
	}
}
