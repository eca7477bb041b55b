package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Where dlock may create cgroups (root, or a delegated cgroup v2 subtree),
// the job runs in a cgroup of its own, "dlock-run-ID" (ID: random, made
// by the front process and passed in runIDEnv; not a pid, which another
// host's pid namespace sharing the cgroup hierarchy gives again) beside
// the supervisor's cgroup's processes: COMMAND is
// started straight into it (clone3's CLONE_INTO_CGROUP), so no process of
// the job is ever outside it. cgroup.kill (Linux 5.14) then SIGKILLs the
// whole job at once, with no race against a process forking, and the
// front process can do the same if the supervisor dies. The subreaper
// still reaps and says when the job is gone.

// jobCgroup is the job's cgroup directory, or "".
type jobCgroup struct {
	dir string
	fd  int
}

// cgroupFor is the path of the cgroup of the job id, in the caller's
// cgroup v2 (the front and the supervisor share it).
func cgroupFor(id string) string {
	if id == "" {
		return ""
	}
	mnt := cgroupMount()
	if mnt == "" {
		return ""
	}
	return firstLine("/proc/self/cgroup", func(line string) (string, bool) {
		rest, ok := strings.CutPrefix(line, "0::")
		return filepath.Join(mnt, rest, "dlock-run-"+id), ok
	})
}

// cgroupMount is where the cgroup v2 hierarchy is mounted: asked of the
// two places systems put it (/sys/fs/cgroup, or /sys/fs/cgroup/unified
// beside v1 controllers) with statfs, else found in the mount table
// (reading /proc/self/mountinfo costs this short-lived process more).
func cgroupMount() string {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir
		}
	}
	return firstLine("/proc/self/mountinfo", func(line string) (string, bool) {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		if fields := strings.Fields(pre); ok && len(fields) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fields[4], true
		}
		return "", false
	})
}

// firstLine is what match makes of the first line of file it accepts, or "".
func firstLine(file string, match func(string) (string, bool)) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := match(sc.Text()); ok {
			return v
		}
	}
	return ""
}

// newJobCgroup makes the job's cgroup, if this process may.
func newJobCgroup() *jobCgroup {
	dir := cgroupFor(os.Getenv(runIDEnv))
	if dir == "" || unix.Access(filepath.Dir(dir), unix.W_OK) != nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil
	}
	return &jobCgroup{dir: dir, fd: fd}
}

// attach makes a starts into the cgroup.
func (cg *jobCgroup) attach(a *syscall.SysProcAttr) {
	a.UseCgroupFD, a.CgroupFD = true, cg.fd
}

// kill SIGKILLs every process in the cgroup; false if the kernel cannot.
func (cg *jobCgroup) kill() bool { return killCgroup(cg.dir) }

func killCgroup(dir string) bool {
	return dir != "" && os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil
}

// remove removes the (empty) cgroup.
func (cg *jobCgroup) remove() {
	unix.Close(cg.fd)
	unix.Rmdir(cg.dir)
}
