//go:build unix && !linux

package main

import (
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// On macOS and the BSDs the job is COMMAND's process group: dlock signals
// the group, and the job is gone when no process is left in it. A process
// that leaves the group (setsid, setpgid: daemons do) is not followed,
// and neither stopped nor waited for. These systems have no child
// subreaper that a program can use portably (FreeBSD's procctl reaper
// and DragonFly's are not used yet), and no pid namespaces.

type groupJob struct {
	pgid   int
	exit   chan int
	goneCh chan struct{}
}

func becomeSubreaper() error { return nil }

func pidnsAttr(*syscall.SysProcAttr) error {
	return errors.New("pid namespaces exist only on Linux")
}

// stopOrphans: without a subreaper, orphans go to init; nothing to do.
func stopOrphans(id string, grace, within time.Duration) int { return 0 }

func startJob(cmd *exec.Cmd, c *runConfig) (job, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.interactiveTTY {
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, 0
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	j := &groupJob{pgid: cmd.Process.Pid, exit: make(chan int, 1), goneCh: make(chan struct{})}
	go func() {
		cmd.Wait()
		j.exit <- exitStatus(cmd.ProcessState)
		// The rest of the group, reparented to init: poll until empty.
		for syscall.Kill(-j.pgid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		close(j.goneCh)
	}()
	return j, nil
}

func (j *groupJob) commandExit() <-chan int { return j.exit }
func (j *groupJob) gone() <-chan struct{}   { return j.goneCh }
func (j *groupJob) cleanup()                {}

func (j *groupJob) mechanism() string {
	return "process group (processes that leave it are not followed on this system)"
}
func (j *groupJob) pids() []int {
	if syscall.Kill(-j.pgid, 0) == nil {
		return []int{-j.pgid}
	}
	return nil
}
func (j *groupJob) signal(sig syscall.Signal) {
	syscall.Kill(-j.pgid, sig)
	if sig != syscall.SIGKILL {
		syscall.Kill(-j.pgid, syscall.SIGCONT)
	}
}
