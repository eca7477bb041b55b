// Command dlock guards a command with a dlock lock directory, like
// util-linux flock(1) but on shared and network filesystems too, and
// inspects or breaks such locks.
//
//	dlock run [flags] PATH -- COMMAND [ARGS...]
//	dlock hold [flags] -pid PID PATH
//	dlock release
//	dlock status [-json] PATH...
//	dlock break [-force] PATH
//	dlock version [-json]
//	dlock completion bash|zsh|fish
//	dlock help [SUBCOMMAND|TOPIC]
//
// Exit statuses of run: COMMAND's own status; 1 for an error of dlock's;
// 2 for a usage error; 75 (EX_TEMPFAIL, -conflict-exit) when the lock was
// busy for all of PATIENCE; 76 when the lock was lost while the job ran;
// 126/127 when COMMAND could not be run or found; 128+N when COMMAND died
// of signal N, or when signal N stopped dlock while it waited for the lock.
// status: 0 free, 3 held, 4 not a lock. See README.md beside this file;
// commands.go is the one source of the help, the man page dlock(1) and the
// shell completions.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Exit statuses of dlock's own making.
const (
	exitError    = 1   // dlock could not do what was asked
	exitUsage    = 2   // bad command line
	exitHeld     = 3   // status: a PATH is held
	exitNotLock  = 4   // status: a PATH is not a lock (or corrupt)
	exitBusy     = 75  // EX_TEMPFAIL: the lock is held by another (run's default -conflict-exit; break without -force)
	exitLost     = 76  // the lock was lost while COMMAND ran
	exitCantExec = 126 // COMMAND was found but could not be started
	exitNotFound = 127 // COMMAND was not found
)

func main() {
	// Invoked as "flock" (a link to this binary): flock(1)'s command line.
	if name := personality(os.Args[0]); name != "" {
		os.Exit(flockMain(name, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// personality is the flock personality's name when argv0 names it: a
// link called flock (or anything ending in "flock", as dflock).
func personality(argv0 string) string {
	base := filepath.Base(argv0)
	base = strings.TrimSuffix(base, ".exe")
	if strings.HasSuffix(base, "flock") {
		return base
	}
	return ""
}

// helpOut is where -h and "dlock help" print: stdout, so that
// "dlock run -h | less" shows it.
var helpOut io.Writer = os.Stdout

// dispatch runs the subcommand in args and returns the exit status.
func dispatch(args []string, stdout, stderr io.Writer) int {
	helpOut = stdout
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-V", "-version", "--version":
		name = "version"
	case "-h", "-help", "--help":
		name = "help"
	}
	if c := lookupCommand(name); c != nil {
		return c.run(rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "dlock: unknown subcommand %q\n\n%s", name, usageText())
	return exitUsage
}

// newFlags returns a FlagSet for subcommand name whose -h prints the
// subcommand's usage, help and flags (from the commands table), and which
// reports errors to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	c := lookupCommand(name)
	fs := flag.NewFlagSet("dlock "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parseFlags prints help or a short usage
	flagSets[name] = fs
	helpers[fs] = flagHelp{
		short: func() {
			fmt.Fprintf(fs.Output(), "%sRun 'dlock %s -h' for help.\n", synopsisText(c), name)
		},
		long: func() {
			fmt.Fprintf(helpOut, "%s\n%s", synopsisText(c), c.help)
			if docs := flagDocs(fs); len(docs) > 0 {
				fmt.Fprintf(helpOut, "\nFlags:\n")
				writeFlags(helpOut, docs)
			}
		},
	}
	return fs
}

// flagHelp prints a subcommand's synopsis (after a bad flag) or its full
// help (for -h).
type flagHelp struct{ short, long func() }

var helpers = map[*flag.FlagSet]flagHelp{}

// parseFlags parses args; it returns the exit status to return at once
// (0 after -h, 2 after a bad flag) and whether to stop.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		helpers[fs].long()
		return 0, true
	case err != nil:
		helpers[fs].short()
		return exitUsage, true
	}
	return 0, false
}

// usageError reports a bad command line with a pointer to -h.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	helpers[fs].short()
	return exitUsage
}
