//go:build dragonfly || freebsd

package proc

import "golang.org/x/sys/unix"

// jailed reports whether this process runs in a jail. A jail shares the
// host's kernel, its boot time and (unless set per jail) its host UUID,
// and its pids are the host's, but it sees only its own processes:
// kill(pid, 0) of a live process outside answers ESRCH. A jail and the
// host, or two jails, sharing a lock directory (a nullfs mount) would
// each take the other's live holders for dead and reclaim their locks. So
// in a jail this host's identity is unknown, and a holder is reclaimed
// only after its TIMEOUT. (Read against jail(8) and sysctl(8); not run
// here.)
func jailed() bool {
	for _, name := range []string{"security.jail.jailed", "jail.jailed"} { // FreeBSD, DragonFly
		if v, err := unix.SysctlUint32(name); err == nil {
			return v != 0
		}
	}
	return false
}
