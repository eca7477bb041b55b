//go:build unix

package dlock

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The child processes of the tests are this test binary again, with
// DLOCK_TEST_CHILD naming the role the child plays (and variables of the
// role's own for its parameters): TestMain plays it instead of running
// the tests. Every role is in one table, roles, with those that need
// Linux in linuxRoles (roles_linux_test.go); each role's code stays with
// the tests that start it.
//
// DLOCK_TEST_ELSEWHERE=1 with a role: the child plays it on "another
// host" (reexecElsewhere, sharedfs_roles_test.go).

// roles are the children's roles on any Unix.
var roles = map[string]func() int{
	"counter": counterChild,                            // concurrent_test.go
	"sem":     func() int { return crowdChild("sem") }, // (and read, write)
	"read":    func() int { return crowdChild("read") },
	"write":   func() int { return crowdChild("write") },
	"single":  singleChild,
	"hold":    holdChild,
	"racer":   racerChild, // sharedfs_roles_test.go
	"turns":   turnsChild, // concurrent_test.go
}

// playRole plays the child role named, and says with what exit status
// the child ends.
func playRole(role string) int {
	if os.Getenv("DLOCK_TEST_ELSEWHERE") == "1" {
		return reexecElsewhere()
	}
	play, ok := roles[role]
	if !ok {
		play, ok = linuxRoles[role]
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown DLOCK_TEST_CHILD %q\n", role)
		return 2
	}
	return play()
}

func TestMain(m *testing.M) {
	if role := os.Getenv("DLOCK_TEST_CHILD"); role != "" {
		os.Exit(playRole(role))
	}
	code := m.Run()
	// go test ./... hides a passing package's output (without -v): say on
	// the terminal, if there is one, that the shared-filesystem tests were
	// skipped and how to run them.
	run := strings.Split(flag.Lookup("test.run").Value.String(), "/")[0]
	selected, _ := regexp.MatchString(run, "TestSharedFSCounter")
	if selected && (os.Getenv("DLOCK_SHAREDFS_M1") == "" || os.Getenv("DLOCK_SHAREDFS_M2") == "") {
		out := io.Writer(os.Stderr)
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil && !testing.Verbose() {
			out = tty // closed by the exit
		}
		fmt.Fprintln(out, `dlock: skipped the shared-filesystem tests (TestSharedFS*): run eval "$(sudo scripts/sharedfs.sh up)", then go test -run SharedFS . to run them`)
	}
	os.Exit(code)
}
