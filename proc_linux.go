package dlock

import (
	"bytes"
	"os"
	"strconv"
)

// hostIdentity names this boot of this host and this process's pid
// namespace: two processes that see the same value see the same pids.
// Containers that share a host name and a mount still differ here.
func hostIdentity() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil || len(bytes.TrimSpace(boot)) == 0 {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(boot)) + "/" + ns
}

// processStart returns the start time of process pid (clock ticks since
// boot), whether it is alive (a zombie is not), and whether that verdict is
// known at all.
func processStart(pid int) (start uint64, alive, known bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		// /proc may hide other users' processes (hidepid): only ESRCH
		// from kill proves the process is gone.
		alive, known = pidLiveness(pid)
		return 0, alive, known
	}
	// The command name (field 2) is in parentheses and may hold anything;
	// the fields after the last ')' are: state (3) ... starttime (22).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false, false
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 20 {
		return 0, false, false
	}
	if f[0][0] == 'Z' || f[0][0] == 'X' {
		return 0, false, true
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, true, true
	}
	return start, true, true
}
