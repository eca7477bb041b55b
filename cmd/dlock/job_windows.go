package main

import (
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows dlock is one process: the job is a job object holding
// COMMAND and what it starts, killed as a whole when dlock stops it or
// exits (even when killed: kill-on-close), and dlock releases the lock
// when COMMAND exits. COMMAND starts suspended and runs only once it is in
// the job object, so that nothing it starts can escape it.

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
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.CreationFlags |= windows.CREATE_SUSPENDED
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	j := &winJob{cmd: cmd, handle: killOnCloseJob(cmd.Process.Pid), exit: make(chan int, 1), goneCh: make(chan struct{})}
	if err := resume(cmd.Process.Pid); err != nil {
		if j.handle != 0 {
			windows.TerminateJobObject(j.handle, 1)
		}
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("resuming it once in its job object: %w", err)
	}
	go func() {
		cmd.Wait()
		j.exit <- exitStatus(cmd.ProcessState)
		close(j.goneCh)
	}()
	return j, nil
}

func (j *winJob) commandExit() <-chan int { return j.exit }
func (j *winJob) gone() <-chan struct{}   { return j.goneCh }
func (j *winJob) cleanup()                {}

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

// resume lets the suspended process pid run: its threads (one, made
// suspended) are resumed. os/exec keeps no handle of the thread.
func resume(pid int) error {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(snap)
	te := windows.ThreadEntry32{Size: uint32(unsafe.Sizeof(windows.ThreadEntry32{}))}
	resumed := 0
	for err = windows.Thread32First(snap, &te); err == nil; err = windows.Thread32Next(snap, &te) {
		if te.OwnerProcessID != uint32(pid) {
			continue
		}
		th, err := windows.OpenThread(windows.THREAD_SUSPEND_RESUME, false, te.ThreadID)
		if err != nil {
			return err
		}
		_, err = windows.ResumeThread(th)
		windows.CloseHandle(th)
		if err != nil {
			return err
		}
		resumed++
	}
	if resumed == 0 {
		return fmt.Errorf("no thread of process %d found", pid)
	}
	return nil
}
