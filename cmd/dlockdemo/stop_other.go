//go:build !unix

package main

import (
	"errors"
	"os"
)

// canStop says whether this system can stop and continue a process: here
// it cannot, and the demo skips the stopped-holder scene.
const canStop = false

var errNoStop = errors.New("stopping a process is not supported here")

func stopSelf() error { return errNoStop }

func resume(p *os.Process) error { return errNoStop }
