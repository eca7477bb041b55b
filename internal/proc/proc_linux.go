package proc

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
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
// known at all. A waiter asks it for every new holder it sees, so it reads
// /proc/PID/stat in one read into a buffer on the stack and parses it in
// place.
func processStart(pid int) (start uint64, alive, known bool) {
	var buf [1024]byte
	data, err := readProc("/proc/"+strconv.Itoa(pid)+"/stat", buf[:])
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
	rest := data[i+1:]
	for field := 3; ; field++ {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		f := bytes.TrimRight(rest[:end], "\n")
		switch {
		case len(f) == 0:
			return 0, false, false // fewer fields than a stat line has
		case field == 3 && (f[0] == 'Z' || f[0] == 'X'):
			return 0, false, true
		case field == 22:
			start, err = strconv.ParseUint(string(f), 10, 64)
			if err != nil {
				return 0, true, true
			}
			return start, true, true
		}
		rest = rest[end:]
	}
}

// readProc reads a small /proc file in one read into buf, or, if it does
// not fit, whole.
func readProc(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	switch {
	case err != nil:
		return nil, err
	case n == len(buf):
		return os.ReadFile(path)
	}
	return buf[:n], nil
}
