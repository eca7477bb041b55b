//go:build !linux

// Command startcost measures a short "dlock run" against flock(1): see
// main_linux.go. It runs on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "startcost: Linux only (util-linux flock(1), a child subreaper)")
	os.Exit(1)
}
