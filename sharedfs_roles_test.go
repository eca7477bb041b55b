//go:build unix

package dlock

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Child processes of the shared-filesystem tests (sharedfs_test.go), as
// TestMain plays them (playRole):
//
//   - DLOCK_TEST_ELSEWHERE=1 with any DLOCK_TEST_CHILD role: the child
//     re-executes itself under `unshare --pid --fork --mount-proc`, so it
//     plays its role on "another host": its own pid namespace, hence
//     another host lockdir.Identity, so no waiter may judge it by its pid.
//     The process the parent started is unshare; the player is its only
//     child, which the kernel kills with SIGKILL as unshare dies
//     (--kill-child): SIGKILL unshare to kill the player.
//   - DLOCK_TEST_CHILD=racer: a reclaimer driven by lines on stdin
//     (racerChild).
func reexecElsewhere() int {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	os.Unsetenv("DLOCK_TEST_ELSEWHERE")
	args := append([]string{unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "--"}, os.Args...)
	err = syscall.Exec(unshare, args, os.Environ())
	fmt.Println("error", "exec unshare:", err)
	return 1
}

// racerChild takes one stale lock at a time, racing another process, on
// these lines of stdin:
//
//	try PATH AT      TryLock at PATH at AT (Unix nanoseconds), then say
//	                 "won FENCE", "busy" or "error MESSAGE"
//	release          Unlock what it won, then say "released ERR" (or
//	                 "released none")
//
// Its locks have TIMEOUT DLOCK_TIMEOUT.
func racerChild() int {
	timeout, err := time.ParseDuration(os.Getenv("DLOCK_TIMEOUT"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	var held *Lock
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "try":
			at, _ := strconv.ParseInt(f[2], 10, 64)
			l, err := New(f[1], WithTimeout(timeout))
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			time.Sleep(time.Until(time.Unix(0, at)))
			ok, err := l.TryLock()
			switch {
			case err != nil:
				fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
			case ok:
				held = l
				fmt.Println("won", l.Fence())
			default:
				fmt.Println("busy")
			}
		case len(f) == 1 && f[0] == "release":
			if held == nil {
				fmt.Println("released none")
				continue
			}
			fmt.Println("released", held.Unlock())
			held = nil
		default:
			fmt.Printf("error unknown command %q\n", in.Text())
		}
	}
	return 0
}
