// Command dlock guards a command with a dlock lock directory, like
// util-linux flock(1) but on shared and network filesystems too, and
// inspects or breaks such locks.
//
//	dlock run [flags] PATH -- COMMAND [ARGS...]
//	dlock hold [flags] -pid PID PATH
//	dlock release
//	dlock status [-json] PATH...
//	dlock break [-force] PATH
//	dlock help | version
//
// Exit statuses of run: COMMAND's own status; 1 for an error of dlock's;
// 2 for a usage error; 75 (EX_TEMPFAIL, -conflict-exit) when the lock was
// busy for all of PATIENCE; 76 when the lock was lost while the job ran;
// 126/127 when COMMAND could not be run or found; 128+N when COMMAND died
// of signal N, or when signal N stopped dlock while it waited for the lock.
// status: 0 free, 3 held, 4 not a lock. See README.md beside this file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
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

const usage = `dlock: guard a command with a lock that works on shared filesystems

Usage:
  dlock run [flags] PATH -- COMMAND [ARGS...]   run COMMAND (and all it starts) while holding the lock at PATH
  dlock hold [flags] -pid PID PATH              hold the lock while process PID lives (the rest of a script)
  dlock release                                 release what "dlock hold" holds, before the script ends
  dlock status [-json] PATH...                  show whether locks are free or held, and by whom
  dlock break [-force] PATH                     free a lock whose holder is gone or stale
  dlock flock [flock's options] FILE COMMAND    util-linux flock(1)'s command line (also as a link named flock)
  dlock help [SUBCOMMAND]                       show this help, or a subcommand's
  dlock version                                 print the version

A lock is a directory at PATH (created on first use; its parent must exist).
Run "dlock help run" for the flags and exit statuses of run.
`

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
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return runCmd(rest, stderr)
	case "hold":
		return holdCmd(rest, stdout, stderr)
	case "release":
		return releaseCmd(rest, stdout, stderr)
	case superviseCmd:
		return superviseMain(rest, stderr)
	case holderCmd:
		return holderMain(rest, stderr)
	case flockHolderCmd:
		return flockHolderMain(rest, stderr)
	case "flock":
		return flockMain("flock", rest, stdout, stderr)
	case "status":
		return statusCmd(rest, stdout, stderr)
	case "break":
		return breakCmd(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "dlock", version())
		return 0
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			switch rest[0] {
			case "run", "hold", "release", "status", "break":
				return dispatch([]string{rest[0], "-h"}, stdout, stderr)
			case "flock":
				flockHelp(stdout, "flock")
				return 0
			}
			fmt.Fprintf(stderr, "dlock: no help for %q\n\n%s", rest[0], usage)
			return exitUsage
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "dlock: unknown subcommand %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// version is the module version this binary was built from, or "devel".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// newFlags returns a FlagSet whose -h prints the subcommand's usage and
// examples, and which reports errors to stderr.
func newFlags(name, synopsis, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("dlock "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parseFlags prints help or a short usage
	helpers[fs] = flagHelp{
		short: func() {
			fmt.Fprintf(fs.Output(), "Usage: dlock %s %s\nRun 'dlock %s -h' for help.\n", name, synopsis, name)
		},
		long: func() {
			fmt.Fprintf(helpOut, "Usage: dlock %s %s\n\n%s\nFlags:\n", name, synopsis, help)
			printFlags(fs, helpOut)
		},
	}
	return fs
}

// printFlags lists fs's flags, each with its usage text, which says its
// default (flag.PrintDefaults would add a second one).
func printFlags(fs *flag.FlagSet, w io.Writer) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  -" + f.Name
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
	})
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
