//go:build unix

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runFront is the process the user started. It starts the supervising
// process, which takes the lock, runs the job and holds the lock until the
// job is gone; this one forwards signals to it and exits with its status.
//
// Why two processes: the lock records the pid of the process that holds
// it, and a waiter on this host takes the lock over at once when that
// process is gone. If the process that the user (or cron, or a timeout)
// kills with SIGKILL held the lock, the lock would pass on while the job
// still ran. The supervisor notices this process's death (a pipe whose
// other end only this process holds reaches EOF), stops the job, waits
// for its last process, and only then releases the lock and exits.
//
// The supervisor runs in a process group of its own, so that a signal to
// this process's group (a terminal's Ctrl-C, kill -9 -PGID) does not reach
// it, and the job in another one. If the supervisor itself dies, the job's
// processes are handed to this process (a child subreaper too, on
// Linux), which stops them.
func runFront(c *runConfig, args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "dlock: cannot find its own executable to start the supervisor: %v\n", err)
		return exitError
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "dlock: %v\n", err)
		return exitError
	}
	defer w.Close()
	// The supervisor reports COMMAND's status on this pipe when COMMAND
	// exits while leftovers of its job hold the lock on.
	sr, sw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "dlock: %v\n", err)
		return exitError
	}
	fg := "bg"
	pgrp, _ := unix.Getpgid(0)
	if tp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && tp == pgrp {
		fg = "fg" // in the foreground of a terminal: the job gets it
	}
	sup := exec.Command(exe, append([]string{superviseCmd, fg}, args...)...)
	sup.Stdin, sup.Stdout, sup.Stderr = os.Stdin, os.Stdout, os.Stderr
	id := newRunID()
	sup.Env = append(os.Environ(), runIDEnv+"="+id)
	sup.ExtraFiles = []*os.File{r, sw}
	if c.fl != nil && c.fl.useFd {
		sup.ExtraFiles = append(sup.ExtraFiles, os.NewFile(uintptr(c.fl.fd), strconv.Itoa(c.fl.fd)))
		if c.fl.fd > 2 {
			// Passed as descriptor 5 alone: the job gets it back at its
			// number unless --close.
			syscall.CloseOnExec(c.fl.fd)
		}
	}
	sup.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.pidns {
		if err := pidnsAttr(sup.SysProcAttr); err != nil {
			fmt.Fprintf(stderr, "dlock: -pidns: %v\n", err)
			return exitError
		}
	}
	bk, err := startFrontBackend(c, sup) // a URL PATH's helper (backend_unix.go)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	becomeSubreaper()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	err = sup.Start()
	bk.handedOver()
	if err != nil {
		r.Close()
		sr.Close()
		sw.Close()
		bk.wait(time.Second)
		if c.pidns {
			fmt.Fprintf(stderr, "dlock: -pidns: cannot make a pid namespace here (%v): run without -pidns, or as root, or where unprivileged user namespaces are allowed\n", err)
		} else {
			fmt.Fprintf(stderr, "dlock: starting the supervisor %s: %v\n", exe, err)
		}
		return exitError
	}
	r.Close()
	sw.Close()
	// Started: from here on this process stays in the background of the
	// terminal while the job has it, and takes it back at the end.
	signal.Ignore(syscall.SIGTTOU)
	if fg == "fg" {
		defer unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, pgrp)
	}

	exited := make(chan int, 1)
	supKilled := false // written before exited is sent, read after
	reported := make(chan int, 1)
	go func() {
		line, _ := bufio.NewReader(sr).ReadString('\n')
		if n, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			reported <- n
			return
		}
		sup.Wait()
		ws, _ := sup.ProcessState.Sys().(syscall.WaitStatus)
		supKilled = ws.Signaled()
		exited <- exitStatus(sup.ProcessState)
	}()
	for {
		select {
		case status := <-reported:
			return status
		case sig := <-sigs:
			if err := sup.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
				fmt.Fprintf(stderr, "dlock: forwarding %v to the supervisor: %v\n", sig, err)
			}
		case status := <-exited:
			bk.wait(c.timeout)
			// A supervisor that exited (rather than being killed) did so
			// once the job was gone, or before it started: only a killed
			// one leaves processes to stop, handed to this subreaper.
			if !supKilled {
				return status
			}
			if orphans := stopOrphans(id, c.grace, 5*time.Second+c.grace); orphans > 0 {
				fmt.Fprintf(stderr, "dlock: the supervisor exited (status %d) leaving %d processes of the job: stopped them\n", status, orphans)
			}
			return status
		}
	}
}

// frontGone is closed when the front process has died: the pipe it
// passed as descriptor 3 reaches EOF.
func frontGone() <-chan struct{} {
	done := make(chan struct{})
	syscall.CloseOnExec(3)
	f := os.NewFile(3, "front")
	if f == nil {
		close(done)
		return done
	}
	go func() {
		io.Copy(io.Discard, f)
		close(done)
	}()
	return done
}

// runIDEnv passes the job's id from the front process to the supervisor.
const runIDEnv = "DLOCK_RUN_ID"

// newRunID is a job id: 64 random bits.
func newRunID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusReporter is the supervisor's end of the status pipe (descriptor
// 4): it writes COMMAND's status once, then lets go of the caller's
// stdin and stdout, and of stderr where it is a pipe or socket (a
// terminal or a file keeps the messages of a loss), so that a "$(...)"
// or a caller reading dlock's output to its end is done when COMMAND
// is, as with flock.
func statusReporter() func(int) {
	syscall.CloseOnExec(4)
	f := os.NewFile(4, "status")
	if f == nil {
		return nil
	}
	return func(status int) {
		fmt.Fprintf(f, "%d\n", status)
		f.Close()
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return
		}
		defer null.Close()
		var e unix.Stat_t
		waitedOn := unix.Fstat(2, &e) == nil && (e.Mode&unix.S_IFMT == unix.S_IFIFO || e.Mode&unix.S_IFMT == unix.S_IFSOCK)
		unix.Dup2(int(null.Fd()), 0)
		unix.Dup2(int(null.Fd()), 1)
		if waitedOn {
			unix.Dup2(int(null.Fd()), 2)
		}
	}
}
