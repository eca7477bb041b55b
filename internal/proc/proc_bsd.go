//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package proc

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// hostIdentity names this boot of this host. The BSDs and macOS have no
// pid namespaces that share a mount with the host (jails get their own
// boot time view only through the host), so boot time and host UUID do.
func hostIdentity() string {
	if jailed() {
		return ""
	}
	tv, err := unix.SysctlTimeval("kern.boottime")
	if err != nil {
		return ""
	}
	uuid, _ := unix.Sysctl(hostUUIDSysctl)
	return strconv.FormatInt(int64(tv.Sec), 10) + "." + strconv.FormatInt(int64(tv.Usec), 10) + "/" + uuid
}

// processStart returns the start time of process pid where the OS gives
// it cheaply (macOS), whether it is alive, and whether that is known.
func processStart(pid int) (start uint64, alive, known bool) {
	start, zombie, ok := processInfo(pid)
	if ok {
		return start, !zombie, true
	}
	alive, known = pidLiveness(pid)
	return 0, alive, known
}
