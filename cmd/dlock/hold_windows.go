package main

import (
	"fmt"
	"io"
	"log/slog"
)

// On Windows "dlock hold" is not available: there is no shell whose pid
// a holder would watch in the way a POSIX script passes $$.

func startHolder(args []string, stderr io.Writer) (int, string) {
	fmt.Fprintln(stderr, "dlock hold: not supported on Windows; use dlock run")
	return exitError, ""
}

func watchProcess(pid int) <-chan struct{} { return make(chan struct{}) }

func processAlive(pid int) bool { return false }

func newLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func terminate(pid int) error { return fmt.Errorf("not supported on Windows") }
