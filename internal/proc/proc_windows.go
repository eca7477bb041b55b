package proc

import (
	"errors"
	"strconv"
	"time"

	"golang.org/x/sys/windows"
)

// hostIdentity names this boot of this host: the boot time, rounded to a
// minute so that it reads the same in every process. (If two processes
// straddle a rounding edge they merely miss the fast dead-holder path.)
func hostIdentity() string {
	boot := time.Now().Add(-time.Duration(windows.DurationSinceBoot())).Round(time.Minute)
	return strconv.FormatInt(boot.Unix(), 10)
}

// processStart returns pid's creation time and whether it still runs.
//
// A process counts as gone once its process object is signalled: it has
// ended and its handles are closed, among them a job object's with
// kill-on-close (dlock run's), whose processes are then terminated too.
// Its exit code is set earlier than that, while its handles are still
// being closed, and is no proof either way: a process may exit with 259,
// STILL_ACTIVE. Without SYNCHRONIZE access (another user's process) the
// exit code is all there is.
func processStart(pid int) (start uint64, alive, known bool) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION|windows.SYNCHRONIZE, false, uint32(pid))
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		h, err = windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	}
	if err != nil {
		if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
			return 0, false, true // no such process
		}
		return 0, true, true // exists, but we may not look
	}
	defer windows.CloseHandle(h)
	if ev, err := windows.WaitForSingleObject(h, 0); err == nil && ev == windows.WAIT_OBJECT_0 {
		return 0, false, true
	} else if err != nil {
		var code uint32
		if err := windows.GetExitCodeProcess(h, &code); err == nil && code != 259 { // STILL_ACTIVE
			return 0, false, true
		}
	}
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &creation, &exit, &kernel, &user); err != nil {
		return 0, true, true
	}
	return uint64(creation.Nanoseconds()), true, true
}

// pidAlive is a first look: false only if no process has pid.
func pidAlive(pid int) bool {
	_, alive, known := processStart(pid)
	return alive || !known
}
