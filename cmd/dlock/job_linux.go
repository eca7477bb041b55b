package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// On Linux the supervisor is the job's child subreaper: every process of
// the job that loses its parent (a daemon's double fork, nohup, a shell's
// background job outliving the shell) is handed to the supervisor instead
// of to init, so the job is exactly the supervisor's descendants, and it
// is gone when the supervisor has no child left (wait returns ECHILD).
// Processes are listed from /proc and signalled through a pidfd opened
// after checking the process's start time, so a pid reused meanwhile is
// never signalled. With -pidns the supervisor is the init of a pid
// namespace holding the job: when it dies, however, the kernel kills
// every process in it before its death is reported to anyone.

// becomeSubreaper makes this process the child subreaper of its
// descendants.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// pidnsAttr asks for the supervisor to be started as the init of a new pid
// namespace, inside a user namespace that maps only the caller's own uid
// and gid when the caller is not root.
func pidnsAttr(a *syscall.SysProcAttr) error {
	a.Cloneflags |= syscall.CLONE_NEWPID
	if os.Geteuid() != 0 {
		a.Cloneflags |= syscall.CLONE_NEWUSER
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Geteuid(), HostID: os.Geteuid(), Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getegid(), HostID: os.Getegid(), Size: 1}}
		a.GidMappingsEnableSetgroups = false
	}
	return nil
}

type linuxJob struct {
	cmd    *exec.Cmd
	self   int  // this process's pid as /proc shows it
	init   bool // this process is the init of the job's pid namespace
	cg     *jobCgroup
	exit   chan int
	goneCh chan struct{}
	// alone is set when COMMAND's exit left this process no child: the
	// job is gone (see noChildren), and pids need not read /proc.
	alone atomic.Bool
}

// startJob starts cmd as the job: in a process group of its own (given
// the terminal when dlock had it), its orphans reaped here.
func startJob(cmd *exec.Cmd, c *runConfig) (job, error) {
	j := &linuxJob{cmd: cmd, self: os.Getpid(), exit: make(chan int, 1), goneCh: make(chan struct{})}
	if s, err := os.Readlink("/proc/self"); err == nil {
		j.self, _ = strconv.Atoi(s)
	}
	j.init = os.Getpid() == 1
	if !j.init {
		if err := becomeSubreaper(); err != nil {
			return nil, fmt.Errorf("becoming the job's child subreaper: %w", err)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.interactiveTTY {
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, 0
	}
	if !j.init {
		j.cg = newJobCgroup()
	}
	if j.cg != nil {
		j.cg.attach(cmd.SysProcAttr)
	}
	err := cmd.Start()
	if err != nil && j.cg != nil { // a kernel without CLONE_INTO_CGROUP
		j.cg.remove()
		j.cg = nil
		cmd.SysProcAttr.UseCgroupFD = false
		cmd.Process, err = nil, cmd.Start()
	}
	if err != nil {
		return nil, err
	}
	go j.reap()
	return j, nil
}

// reap waits for every child, reporting COMMAND's status, until none is
// left.
func (j *linuxJob) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil: // ECHILD: the job is gone (its cgroup is removed by cleanup)
			close(j.goneCh)
			return
		case pid == j.cmd.Process.Pid:
			status := ws.ExitStatus()
			if ws.Signaled() {
				status = 128 + int(ws.Signal())
			}
			j.alone.Store(noChildren())
			j.exit <- status
		}
	}
}

func (j *linuxJob) commandExit() <-chan int { return j.exit }

// cleanup removes the job's cgroup, after its last process (the caller
// waits for gone first).
func (j *linuxJob) cleanup() {
	if j.cg != nil {
		j.cg.remove()
		j.cg = nil
	}
}

func (j *linuxJob) gone() <-chan struct{} { return j.goneCh }

func (j *linuxJob) mechanism() string {
	if j.init {
		return "pid namespace (dlock's supervisor is its init: the job dies with it, even by SIGKILL) + process group"
	}
	m := "child subreaper (dlock's supervisor, which holds the lock) + process group"
	if j.cg != nil {
		m += " + cgroup " + j.cg.dir
	}
	return m
}

func (j *linuxJob) pids() []int {
	if j.alone.Load() {
		return nil
	}
	procs, ok := childrenTree(j.self)
	if !ok {
		procs = descendants(j.self)
	}
	var pids []int
	for _, p := range procs {
		pids = append(pids, p.pid)
	}
	return pids
}

// noChildren reports whether this process has no child left, exited or
// not. The job's processes are this child subreaper's descendants, each
// reached through a child of its own (a process whose parent dies is
// handed to the nearest subreaper above it: this one, or one inside the
// job, itself a descendant), so none left means the job is gone, and for
// good: nothing else starts children here. It asks the kernel once,
// where listing the job reads /proc (and every /proc/PID entry read is
// work for the kernel again when this process is reaped: about 4 ms of
// CPU for the front process, measured, against a whole "dlock run" of
// about 10).
func noChildren() bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return errors.Is(err, unix.ECHILD)
		}
	}
}

// childrenTree lists the living descendants of pid from the children
// files of /proc/PID/task/TID (a few reads, where descendants reads every
// process's stat): false where the kernel has none. A process being
// reparented that moment can be missed, so it serves the questions a
// miss cannot make unsafe (is anything left, for messages and for when
// the front may exit); signals go through descendants.
func childrenTree(pid int) ([]procInfo, bool) {
	var out []procInfo
	todo := []int{pid}
	for len(todo) > 0 {
		p := strconv.Itoa(todo[0])
		root := todo[0] == pid
		todo = todo[1:]
		tasks, err := os.ReadDir("/proc/" + p + "/task")
		if err != nil {
			if root {
				return nil, false
			}
			continue
		}
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + p + "/task/" + t.Name() + "/children")
			if err != nil {
				if root && errors.Is(err, os.ErrNotExist) {
					return nil, false // no CONFIG_PROC_CHILDREN
				}
				continue
			}
			for _, f := range bytes.Fields(b) {
				c, _ := strconv.Atoi(string(f))
				if info, ok := readProc(c); ok {
					if !info.zombie {
						out = append(out, info)
					}
					todo = append(todo, c)
				}
			}
		}
	}
	return out, true
}

// signal sends sig to every process of the job, and SIGCONT after it, so
// that a stopped process gets to handle it.
func (j *linuxJob) signal(sig syscall.Signal) {
	if j.init {
		unix.Kill(-1, sig) // every process in the namespace but its init
		if sig != syscall.SIGKILL {
			unix.Kill(-1, syscall.SIGCONT)
		}
		return
	}
	if sig == syscall.SIGKILL && j.cg != nil {
		j.cg.kill()
	}
	signalAll(descendants(j.self), sig)
}

// signalAll signals each process, and SIGCONT after a catchable signal.
func signalAll(procs []procInfo, sig syscall.Signal) {
	for _, p := range procs {
		signalProc(p, sig)
		if sig != syscall.SIGKILL {
			signalProc(p, syscall.SIGCONT)
		}
	}
}

// signalProc signals p unless its pid now names another process.
func signalProc(p procInfo, sig syscall.Signal) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if errors.Is(err, unix.ENOSYS) {
		if q, ok := readProc(p.pid); ok && q.start == p.start {
			unix.Kill(p.pid, sig)
		}
		return
	}
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	if q, ok := readProc(p.pid); ok && q.start == p.start {
		unix.PidfdSendSignal(fd, sig, nil, 0)
	}
}

// procInfo is a process as /proc/PID/stat shows it.
type procInfo struct {
	pid, ppid int
	start     uint64 // start time, clock ticks after boot
	zombie    bool
}

// readProc reads /proc/PID/stat.
func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	// The command name (field 2) is in parentheses and may hold anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	start, _ := strconv.ParseUint(string(f[19]), 10, 64)
	return procInfo{pid: pid, ppid: ppid, start: start, zombie: f[0][0] == 'Z' || f[0][0] == 'X'}, true
}

// descendants lists the living descendants of pid.
func descendants(pid int) []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]procInfo{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(n); ok {
			kids[p.ppid] = append(kids[p.ppid], p)
		}
	}
	var out []procInfo
	todo := []int{pid}
	for len(todo) > 0 {
		next := todo[0]
		todo = todo[1:]
		for _, k := range kids[next] {
			if !k.zombie {
				out = append(out, k)
			}
			todo = append(todo, k.pid)
		}
	}
	return out
}

// stopOrphans stops the processes handed to this process (its child
// subreaper) after the supervisor of job id died without stopping it:
// SIGTERM, SIGKILL after grace, until none is left or within. It returns
// how many there were.
func stopOrphans(id string, grace, within time.Duration) int {
	self := os.Getpid()
	cg := cgroupFor(id)
	defer os.Remove(cg) // once empty
	first := descendants(self)
	if len(first) == 0 {
		killCgroup(cg) // whatever is left there
		reapAll()
		return 0
	}
	signalAll(first, syscall.SIGTERM)
	deadline := time.Now().Add(within)
	killAt := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		reapAll()
		left := descendants(self)
		if len(left) == 0 {
			break
		}
		if time.Now().After(killAt) {
			killCgroup(cg)
			signalAll(left, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	reapAll()
	return len(first)
}

// reapAll reaps the children that have exited.
func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
