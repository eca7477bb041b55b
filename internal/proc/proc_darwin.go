package proc

import "golang.org/x/sys/unix"

const hostUUIDSysctl = "kern.uuid"

// processInfo reads pid's start time and zombie state from kern.proc.pid.
func processInfo(pid int) (start uint64, zombie, ok bool) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil || kp.Proc.P_pid != int32(pid) {
		return 0, false, false
	}
	tv := kp.Proc.P_starttime
	const szomb = 5 // SZOMB in <sys/proc.h>
	return uint64(tv.Sec)*1e6 + uint64(tv.Usec), kp.Proc.P_stat == szomb, true
}
