//go:build unix

package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
)

// startHolder starts the background holder with the user's arguments and
// returns, once it holds the lock, the shell assignments it reported; or
// its exit status when it could not take the lock. The holder runs in a
// session of its own (no terminal signals reach it), with no stdin and
// stdout: only this process's stdout goes into the script's $(...).
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
	h.ExtraFiles = []*os.File{w}
	h.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
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

// processAlive reports whether pid exists (a zombie counts).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

func newLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// terminate sends pid SIGTERM.
func terminate(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }

// reportFile is where the holder reports the lock held: fd 3, the pipe
// startHolder passed.
func reportFile() *os.File {
	syscall.CloseOnExec(3)
	return os.NewFile(3, "report")
}

// holdReport is what dlock hold prints once the lock is held: shell
// assignments for eval.
func holdReport(abs string, fence uint64, holder int) string {
	return fmt.Sprintf("DLOCK_PATH=%s; DLOCK_FENCE=%d; DLOCK_HOLDER=%d; export DLOCK_PATH DLOCK_FENCE DLOCK_HOLDER\n",
		shellQuote(abs), fence, holder)
}

// releaseAsked: dlock release sends the holder SIGTERM (terminate), which
// its signal handling hears; nothing else asks.
func releaseAsked() <-chan struct{} { return nil }
