package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"

	"github.com/lockdir/dlock"
)

// The flock personality takes the kernel's flock(2) lock beside dlock's:
// there is none on Windows.

func flockMain(prog string, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "%s: the flock personality is for unix systems; on Windows use dlock run\n", prog)
	return exUsageF
}

func flockHolderMain(args []string, stderr io.Writer) int { return exitUsage }

func flockRunConfig(c *flockConfig, stderr io.Writer) (*runConfig, int, bool) {
	return nil, flockMain(c.prog, nil, nil, stderr), true
}

type flockLocked struct {
	locker dlock.Locker
	path   string
	fence  uint64
}

func flockAcquire(ctx context.Context, c *runConfig, extra []dlock.Option, stdout, stderr io.Writer) (*flockLocked, int) {
	return nil, exUsageF
}

func (fl *flockLocked) prepareJob(c *flockConfig, cmd *exec.Cmd) {}
func (fl *flockLocked) release(c *flockConfig) error             { return nil }

func statusReporter() func(int) { return nil }
