package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/windows"
)

// "dlock hold" on Windows: the holder is a process of its own, in a
// process group of its own (Ctrl-C in the console does not reach it), that
// holds the lock while process PID lives (PowerShell passes $PID). It
// reports through a pipe handle it inherits (named in DLOCK_HOLD_REPORT),
// and prints PowerShell assignments. Windows has no SIGTERM: dlock release
// sets an event the holder waits on (Local\dlock-release-PID); on loss the
// holder kills PID, as a stop is a kill on Windows.

const reportEnv = "DLOCK_HOLD_REPORT"

// startHolder starts the background holder and returns, once it holds the
// lock, what it reported; or its exit status when it could not take it.
func startHolder(args []string, stderr io.Writer) (int, string) {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "dlock: cannot find its own executable to start the holder: %v\n", err)
		return exitError, ""
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "dlock: %v\n", err)
		return exitError, ""
	}
	h := exec.Command(exe, append([]string{holderCmd}, args...)...)
	h.Stderr = os.Stderr
	h.Env = append(os.Environ(), reportEnv+"="+strconv.FormatUint(uint64(w.Fd()), 10))
	h.SysProcAttr = &syscall.SysProcAttr{
		CreationFlags:              windows.CREATE_NEW_PROCESS_GROUP,
		AdditionalInheritedHandles: []syscall.Handle{syscall.Handle(w.Fd())},
	}
	if err := h.Start(); err != nil {
		fmt.Fprintf(stderr, "dlock: starting the holder: %v\n", err)
		return exitError, ""
	}
	w.Close()
	out, _ := io.ReadAll(r)
	r.Close()
	if len(out) > 0 {
		h.Process.Release() // it runs on, detached
		return 0, string(out)
	}
	h.Wait()
	code := exitStatus(h.ProcessState)
	if code == 0 {
		code = exitError
	}
	return code, ""
}

// reportFile is the pipe startHolder passed, by its handle's number. The
// holder calls it first: its release event is made then, before it can
// report the lock held and a dlock release look for it.
func reportFile() *os.File {
	released = releaseEvent()
	n, err := strconv.ParseUint(os.Getenv(reportEnv), 10, 64)
	os.Unsetenv(reportEnv)
	if err != nil {
		return os.NewFile(uintptr(windows.InvalidHandle), "report")
	}
	return os.NewFile(uintptr(n), "report")
}

// holdReport: PowerShell assignments, for
//
//	$out = dlock hold -n -pid $PID C:\locks\nightly.lock; if ($LASTEXITCODE) { exit 0 }; Invoke-Expression ($out -join "`n")
func holdReport(abs string, fence uint64, holder int) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	return fmt.Sprintf("$env:DLOCK_PATH=%s; $env:DLOCK_FENCE='%d'; $env:DLOCK_HOLDER='%d'\n", q(abs), fence, holder)
}

// releaseName is the event dlock release sets to ask holder pid to release.
func releaseName(pid int) *uint16 {
	p, _ := windows.UTF16PtrFromString(`Local\dlock-release-` + strconv.Itoa(pid))
	return p
}

// released is closed when dlock release asks this holder to release.
var released <-chan struct{}

func releaseAsked() <-chan struct{} { return released }

// releaseEvent makes this holder's release event and waits on it.
func releaseEvent() <-chan struct{} {
	ev, err := windows.CreateEvent(nil, 1, 0, releaseName(os.Getpid()))
	if err != nil {
		return nil
	}
	c := make(chan struct{})
	go func() {
		windows.WaitForSingleObject(ev, windows.INFINITE)
		close(c)
	}()
	return c
}

// open opens process pid to wait for it; 0 if it is gone (or not ours to
// look at, which processAlive tells apart).
func openProcess(pid int) (windows.Handle, error) {
	return windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
}

// watchProcess is closed when process pid has exited.
func watchProcess(pid int) <-chan struct{} {
	c := make(chan struct{})
	h, err := openProcess(pid)
	if err != nil {
		if processAlive(pid) {
			return make(chan struct{}) // alive but not ours to wait for: never
		}
		close(c)
		return c
	}
	go func() {
		windows.WaitForSingleObject(h, windows.INFINITE)
		windows.CloseHandle(h)
		close(c)
	}()
	return c
}

// processAlive reports whether process pid runs (its process object is
// not signalled yet; one we may not open exists).
func processAlive(pid int) bool {
	h, err := openProcess(pid)
	if err != nil {
		return err == windows.ERROR_ACCESS_DENIED
	}
	defer windows.CloseHandle(h)
	ev, err := windows.WaitForSingleObject(h, 0)
	return err == nil && ev == uint32(windows.WAIT_TIMEOUT)
}

func newLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// terminate stops process pid: a dlock holder is asked to release (its
// event is set), anything else is killed (Windows has no SIGTERM).
func terminate(pid int) error {
	if ev, err := windows.OpenEvent(windows.EVENT_MODIFY_STATE, false, releaseName(pid)); err == nil {
		defer windows.CloseHandle(ev)
		return windows.SetEvent(ev)
	}
	h, err := windows.OpenProcess(windows.PROCESS_TERMINATE, false, uint32(pid))
	if err != nil {
		return err
	}
	defer windows.CloseHandle(h)
	return windows.TerminateProcess(h, 1)
}
