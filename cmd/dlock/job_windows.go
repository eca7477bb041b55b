package main

import (
	"io"
	"os/exec"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows dlock is one process: the job is a job object holding
// COMMAND and what it starts, killed as a whole when dlock stops it or
// exits (even when killed), and dlock releases the lock when COMMAND
// exits. The child is assigned to the job object just after it starts,
// so a process it spawns in that instant escapes it.

func runFront(c *runConfig, args []string, stderr io.Writer) int {
	return supervise(c, nil, stderr)
}

type winJob struct {
	cmd    *exec.Cmd
	handle windows.Handle
	exit   chan int
	goneCh chan struct{}
}

func startJob(cmd *exec.Cmd, c *runConfig) (job, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	j := &winJob{cmd: cmd, handle: killOnCloseJob(cmd.Process.Pid), exit: make(chan int, 1), goneCh: make(chan struct{})}
	go func() {
		cmd.Wait()
		j.exit <- exitStatus(cmd.ProcessState)
		close(j.goneCh)
	}()
	return j, nil
}

func (j *winJob) commandExit() <-chan int { return j.exit }
func (j *winJob) gone() <-chan struct{}   { return j.goneCh }
func (j *winJob) mechanism() string {
	if j.handle == 0 {
		return "COMMAND alone (no job object could be made)"
	}
	return "job object (killed as a whole when dlock exits)"
}
func (j *winJob) pids() []int { return nil }

// signal stops the job: Windows cannot send it SIGINT, SIGTERM or SIGHUP,
// so any of them kills it.
func (j *winJob) signal(sig syscall.Signal) {
	if j.handle != 0 {
		windows.TerminateJobObject(j.handle, 1)
	}
	j.cmd.Process.Kill()
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

// frontGone: on Windows there is no separate front process.
func frontGone() <-chan struct{} { return nil }
