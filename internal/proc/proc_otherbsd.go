//go:build dragonfly || freebsd || netbsd || openbsd

package proc

const hostUUIDSysctl = "kern.hostuuid"

// processInfo is not implemented on these systems: liveness falls back to
// kill(pid, 0), which cannot tell a reused pid from the holder.
func processInfo(pid int) (start uint64, zombie, ok bool) { return 0, false, false }
