package main

import (
	"os"
	"os/exec"
	"unsafe"

	"golang.org/x/sys/windows"
)

// startChild starts cmd inside a job object that kills it when the job's
// last handle closes, that is when dlock exits or is killed, and returns a
// channel that receives cmd.Wait's result. If the job cannot be set up the
// child runs anyway, as on other systems without a parent death signal:
// it outlives a killed dlock and the lock goes stale after TIMEOUT.
// The child is assigned to the job just after it starts, so a process it
// spawns in that instant escapes the job.
func startChild(cmd *exec.Cmd) (<-chan error, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	job := killOnCloseJob(cmd.Process.Pid) // kept open (leaked) until dlock exits
	waited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if job != 0 {
			windows.CloseHandle(job)
		}
		waited <- err
	}()
	return waited, nil
}

func killOnCloseJob(pid int) windows.Handle {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return 0
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{}
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return 0
	}
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(pid))
	if err != nil {
		windows.CloseHandle(job)
		return 0
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		windows.CloseHandle(job)
		return 0
	}
	return job
}

// forward stops the child: Windows cannot send it SIGINT, SIGTERM or
// SIGHUP, so any of them kills it.
func forward(p *os.Process, sig os.Signal) error { return p.Kill() }
