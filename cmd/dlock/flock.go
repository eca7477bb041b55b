package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The flock personality: invoked as "flock" (a link to dlock) or as
// "dlock flock", dlock takes util-linux flock(1)'s whole command line,
// with its meanings, exit statuses and messages, and adds to the kernel's
// lock the dlock lock directory that every host naming the same FILE
// takes (see flockLockPath).

// flock(1)'s exit statuses (sysexits.h) besides COMMAND's own.
const (
	exFlockConflict = 1  // the default -E: the lock was busy
	exUsageF        = 64 // EX_USAGE
	exDataErr       = 65 // EX_DATAERR: another error locking
	exNoInput       = 66 // EX_NOINPUT: FILE could not be opened
	exUnavailable   = 69 // EX_UNAVAILABLE: COMMAND could not be run
	exOSErr         = 71 // EX_OSERR
	exCantCreat     = 73 // EX_CANTCREAT: read-only filesystem, no space
)

// flockHolderCmd is the hidden subcommand of the holder of the
// descriptor form's (and -F's) dlock lock.
const flockHolderCmd = "__flockhold"

// flockOptions are the flock personality's options: util-linux flock's,
// then dlock's own (long only, named so that no flock option is an
// abbreviation of one). -c and --command are not here: as in flock, they
// take the rest of the command line (see parseFlock).
var flockOptions = []optSpec{
	{id: "s", short: 's', long: []string{"shared"}, help: "get a shared lock"},
	{id: "x", short: 'x', long: []string{"exclusive"}, help: "get an exclusive lock (default)"},
	{id: "x", short: 'e', help: "the same as -x"},
	{id: "u", short: 'u', long: []string{"unlock"}, help: "remove a lock (of a descriptor: the dlock lock that goes with it too)"},
	{id: "n", short: 'n', long: []string{"nonblocking", "nb"}, help: "fail rather than wait"},
	{id: "w", short: 'w', long: []string{"timeout", "wait"}, arg: "secs", help: "wait for a limited amount of time (--wait is the same)"},
	{id: "E", short: 'E', long: []string{"conflict-exit-code"}, arg: "number", help: "exit code after conflict or timeout (default 1)"},
	{id: "o", short: 'o', long: []string{"close"}, help: "close file descriptor before running command"},
	{id: "F", short: 'F', long: []string{"no-fork"}, help: "execute command without forking"},
	{id: "fcntl", long: []string{"fcntl"}, help: "use fcntl(F_OFD_SETLK) rather than flock() (and a dlock lock of its own)"},
	{id: "start", long: []string{"start"}, arg: "offset", help: "starting offset for lock (implies --fcntl; dlock: only 0)"},
	{id: "length", long: []string{"length"}, arg: "number", help: "number of bytes to lock (implies --fcntl; dlock: only 0, the whole file)"},
	{id: "fd", long: []string{"fd"}, arg: "number", help: "use the file descriptor number to wrap the lock around the command execution"},
	{id: "verbose", long: []string{"verbose"}, help: "increase verbosity"},
	{id: "h", short: 'h', long: []string{"help"}, help: "display this help"},
	{id: "V", short: 'V', long: []string{"version"}, help: "display version"},
	{id: "stale-after", long: []string{"stale-after"}, arg: "secs", dlock: true, help: "TIMEOUT: a dlock lock not refreshed this long is stale and may be reclaimed (default 10)"},
	{id: "grace", long: []string{"grace"}, arg: "secs", dlock: true, help: "seconds the job gets between SIGTERM and SIGKILL when it is stopped (default TIMEOUT/5)"},
	{id: "stop-leftovers", long: []string{"stop-leftovers"}, dlock: true, help: "when COMMAND exits, stop what is left of its job, then release"},
	{id: "poll", long: []string{"poll"}, arg: "secs", dlock: true, help: "seconds between looks at a busy lock (default 0.1)"},
	{id: "max-clock-skew", long: []string{"max-clock-skew"}, arg: "secs", dlock: true, help: "how far apart the clocks of the hosts sharing FILE may be (default 60)"},
}

// flockConfig is a parsed flock command line.
type flockConfig struct {
	prog      string // the name flock's messages start with
	shared    bool
	unlock    bool
	nonblock  bool
	wait      time.Duration
	haveWait  bool
	conflict  int
	close     bool
	noFork    bool
	verbose   bool
	fcntl     bool
	useFd     bool // --fd NUMBER (with a command)
	fd        int  // the descriptor of --fd or of the NUMBER form; -1: FILE
	file      string
	argv      []string // COMMAND, or the shell and -c; nil: the descriptor form
	shellCmd  bool
	lf        lockFlags // dlock's own settings
	graceSet  bool
	grace     time.Duration
	stopLeft  bool
	origArgs  []string // as given, for the processes that re-parse them
	helpShown bool
}

// flockPatience is PATIENCE as flock's options give it.
func (f *flockConfig) patience() time.Duration {
	switch {
	case f.nonblock:
		return 0
	case f.haveWait:
		return f.wait
	}
	return -1
}

// isCommandOpt: flock's -c and --command end its options.
func isCommandOpt(s string) bool { return s == "-c" || s == "--command" }

// flockUsageError is flock's errx(EX_USAGE) with its "Try" line.
func flockUsageError(stderr io.Writer, prog, msg string, tryHelp bool) int {
	fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
	if tryHelp {
		fmt.Fprintf(stderr, "Try '%s --help' for more information.\n", prog)
	}
	return exUsageF
}

// parseFlock parses a flock command line. It returns the exit status to
// return at once when stop is set (help, version, a usage error).
func parseFlock(prog string, args []string, stdout, stderr io.Writer) (c *flockConfig, code int, stop bool) {
	if len(args) == 0 {
		return nil, flockUsageError(stderr, prog, "not enough arguments", true), true
	}
	c = &flockConfig{prog: prog, conflict: exFlockConflict, fd: -1, origArgs: args}
	c.lf.setDefaults()
	opts, rest, err := getoptLong(args, flockOptions, isCommandOpt)
	if err != nil {
		return nil, flockUsageError(stderr, prog, err.Error(), true), true
	}
	cmdOpt := ""
	var span flockSpan
	for _, o := range opts {
		switch o.id {
		case "":
			cmdOpt = o.spelled
		case "h":
			flockHelp(stdout, prog)
			return nil, 0, true
		case "V":
			fmt.Fprintf(stdout, "%s from dlock %s (util-linux flock's command line)\n", prog, version())
			return nil, 0, true
		default:
			if msg := c.option(o, &span); msg != "" {
				return nil, flockUsageError(stderr, prog, msg, false), true
			}
		}
	}
	switch {
	case c.noFork && c.close:
		return nil, flockUsageError(stderr, prog, "the --no-fork and --close options are incompatible", false), true
	case span.start != 0 || span.length != 0:
		return nil, flockUsageError(stderr, prog, "--start and --length: dlock locks the whole file (a byte range of it is not a lock every host can see); give neither, or 0", false), true
	}
	if msg := c.operands(cmdOpt, rest); msg != "" {
		return nil, flockUsageError(stderr, prog, msg, false), true
	}
	if c.haveWait && c.wait == 0 {
		c.nonblock = true // -w 0 is -n
	}
	c.lf.patience = c.patience()
	c.lf.shared, c.lf.exclusive = c.shared, !c.shared
	if !c.graceSet {
		c.grace = c.lf.timeout / 5
	}
	return c, 0, false
}

// flockSpan is --start and --length: dlock takes only 0 for both.
type flockSpan struct{ start, length int64 }

// option applies one of flock's options but -c, -h and -V to c, and
// returns a usage error's message, or "".
func (c *flockConfig) option(o parsedOpt, span *flockSpan) string {
	switch o.id {
	case "s":
		c.shared, c.unlock = true, false
	case "x":
		c.shared, c.unlock = false, false
	case "u":
		c.unlock = true
	case "n":
		c.nonblock = true
	case "o":
		c.close = true
	case "F":
		c.noFork = true
	case "verbose":
		c.verbose = true
	case "fcntl":
		c.fcntl = true
	case "stop-leftovers":
		c.stopLeft = true
	default:
		return c.valueOption(o, span)
	}
	return ""
}

// valueOption applies an option that takes a value.
func (c *flockConfig) valueOption(o parsedOpt, span *flockSpan) string {
	var err error
	switch o.id {
	case "w":
		c.haveWait = true
		if c.wait, err = flockSeconds(o.value); err != nil {
			return fmt.Sprintf("invalid timeout: '%s'", o.value)
		}
	case "E":
		n, err := strconv.ParseUint(o.value, 10, 64)
		if err != nil || n > 255 {
			return fmt.Sprintf("invalid exit code (allowed values: 0-255): '%s'", o.value)
		}
		c.conflict = int(n)
	case "start", "length":
		n, err := strconv.ParseInt(o.value, 0, 64)
		if err != nil || n < 0 {
			return fmt.Sprintf("invalid %s: '%s'", o.id, o.value)
		}
		if o.id == "start" {
			span.start = n
		} else {
			span.length = n
		}
		c.fcntl = true
	case "fd":
		n, err := strconv.ParseInt(o.value, 10, 32)
		if err != nil || n < 0 {
			return fmt.Sprintf("invalid file descriptor: '%s'", o.value)
		}
		c.useFd, c.fd = true, int(n)
	case "stale-after":
		err = secondsFlag{d: &c.lf.timeout}.Set(o.value)
	case "poll":
		err = secondsFlag{d: &c.lf.poll}.Set(o.value)
	case "max-clock-skew":
		err = secondsFlag{d: &c.lf.maxSkew}.Set(o.value)
	case "grace":
		err = secondsFlag{d: &c.grace, set: &c.graceSet}.Set(o.value)
	}
	if err != nil {
		return fmt.Sprintf("invalid %s: '%s': %v", o.spelled, o.value, err)
	}
	return ""
}

// operands reads what follows the options: FILE and COMMAND, FILE -c
// and a command line, a descriptor's NUMBER, or (--fd, -c) COMMAND alone.
// cmdOpt is -c or --command as spelled among the options, or "". It
// returns a usage error's message, or "".
func (c *flockConfig) operands(cmdOpt string, rest []string) string {
	switch {
	case cmdOpt != "":
		if len(rest) != 1 {
			return cmdOpt + " requires exactly one command argument"
		}
		c.argv = c.shell(rest[0])
	case len(rest) > 1 && !c.useFd:
		c.file = rest[0]
		if isCommandOpt(rest[1]) {
			if len(rest) != 3 {
				return rest[1] + " requires exactly one command argument"
			}
			c.argv = c.shell(rest[2])
		} else {
			c.argv = rest[1:]
		}
	case len(rest) > 0:
		if c.useFd {
			c.argv = rest
		} else {
			n, err := strconv.ParseInt(rest[0], 10, 32)
			if err != nil || n < 0 {
				return fmt.Sprintf("invalid file descriptor: '%s'", rest[0])
			}
			c.fd = int(n)
		}
	case c.useFd:
		return "missing command"
	default:
		return "missing file descriptor, file or directory"
	}
	if c.file == "" && c.fd < 0 {
		return "missing file descriptor, file or directory"
	}
	if c.file == "" && c.argv == nil && c.fd >= 0 && len(rest) == 0 {
		return "missing file descriptor, file or directory"
	}
	return ""
}

// shell is the command line cmd run by the user's shell, as flock -c.
func (c *flockConfig) shell(cmd string) []string {
	sh := os.Getenv("SHELL")
	if sh == "" {
		sh = "/bin/sh"
	}
	c.shellCmd = true
	return []string{sh, "-c", cmd}
}

// flockSeconds reads flock's -w: seconds, with a fraction.
func flockSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt64/float64(time.Second) || strings.ContainsAny(s, "xXpPnN") {
		return 0, errors.New("invalid")
	}
	return time.Duration(f * float64(time.Second)), nil
}

// flockHelp is flock's usage, with what dlock adds.
func flockHelp(w io.Writer, prog string) {
	fmt.Fprintf(w, `
Usage:
 %[1]s [options] <file>|<directory> <command> [<argument>...]
 %[1]s [options] <file>|<directory> -c <command>
 %[1]s [options] <file descriptor number>
 %[1]s [options] --fd <file descriptor number> -c <command>
 %[1]s [options] --fd <file descriptor number> <command> [<argument>...]

Manage file locks from shell scripts: dlock's flock(1). Besides the
kernel's lock on <file>, it takes a dlock lock directory beside it
(<file>.dlock; <directory>/.flock.dlock) that every host mounting the same
filesystem sees, reclaimed when its holder dies or hangs, held for all
the command starts (DLOCK_PATH and DLOCK_FENCE in its environment).

Options:
`, prog)
	var dl []optSpec
	for _, o := range flockOptions {
		if o.dlock {
			dl = append(dl, o)
			continue
		}
		fmt.Fprintln(w, optLine(o))
	}
	fmt.Fprintln(w, " -c, --command <command>  run a single command string through the shell ($SHELL, or /bin/sh)")
	fmt.Fprintln(w, "\ndlock's own options:")
	for _, o := range dl {
		fmt.Fprintln(w, optLine(o))
	}
	fmt.Fprintf(w, `
Exit status: the command's; %d (-E) when the lock was busy; 76 when the dlock
lock was lost while the job ran; 64 usage; 65, 66, 69, 71, 73 as flock(1).
See "dlock help flock" and cmd/dlock/README.md.
`, exFlockConflict)
}

// optLine is one option's line of help.
func optLine(o optSpec) string {
	var names []string
	if o.short != 0 {
		names = append(names, "-"+string(o.short))
	}
	for _, l := range o.long {
		names = append(names, "--"+l)
	}
	s := " " + strings.Join(names, ", ")
	if o.short == 0 {
		s = "    " + s
	}
	if o.arg != "" {
		s += " <" + o.arg + ">"
	}
	if len(s) < 26 {
		s += strings.Repeat(" ", 26-len(s))
	} else {
		s += "\n" + strings.Repeat(" ", 26)
	}
	return s + " " + o.help
}

// strerror is the C library's text for an errno, as flock prints it.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return strerror(pe.Err)
	}
	return err.Error()
}

// flockPrefix replaces dlock's "dlock: " at the start of a message with
// the personality's name.
func flockPrefix(prog, msg string) string {
	msg = strings.TrimPrefix(msg, "dlock: ")
	return prog + ": " + msg
}

// flockLockPath is where the dlock lock that goes with the file at path
// lives, so that every host naming the same file takes the same lock:
//
//	a regular file (or anything not a directory) F:  F.dlock beside it
//	a directory D:                                     D/.flock.dlock inside it
//	a directory that is itself a dlock lock:           D
//
// F and D are resolved to the file itself (symlinks followed, as flock
// opens them), so every name of one file gives one lock. --fcntl locks
// are independent of flock locks, as in the kernel: they use F.fcntl.dlock
// and D/.fcntl.dlock. Beside F rather than inside D: a directory is the
// user's, and its own contents stay untouched; inside D rather than
// beside it: a mount point's parent is another filesystem.
func flockLockPath(path string, fi os.FileInfo, fcntl bool) (lock string, plain bool, err error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false, err
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", false, err
	}
	suffix := ".dlock"
	if fcntl {
		suffix = ".fcntl.dlock"
	}
	if !fi.IsDir() {
		return real + suffix, false, nil
	}
	switch dlockLayout(real) {
	case "plain":
		return real, true, nil
	case "rw":
		return real, false, nil
	case "semaphore":
		return "", false, fmt.Errorf("%s is a dlock semaphore: take it with dlock run -slots N", path)
	}
	if fcntl {
		return filepath.Join(real, ".fcntl.dlock"), false, nil
	}
	return filepath.Join(real, ".flock.dlock"), false, nil
}

// dlockLayout says which kind of dlock lock the directory dir is, from
// its entries: "plain", "rw", "semaphore", or "" (not one: empty, or
// holding anything dlock would not put there, as /tmp holding a file
// named size.txt).
func dlockLayout(dir string) string {
	f, err := os.Open(dir)
	if err != nil {
		return ""
	}
	defer f.Close()
	names, _ := f.Readdirnames(4200) // a semaphore's size marker and slots at most
	kinds := map[string]bool{}
	for _, n := range names {
		k := entryKind(n)
		if k == "" {
			return ""
		}
		kinds[k] = true
	}
	switch {
	case kinds["plain"] && len(kinds) <= 2 && (len(kinds) == 1 || kinds["queue"]):
		return "plain"
	case kinds["rw"] && len(kinds) <= 2 && (len(kinds) == 1 || kinds["rw-member"]):
		return "rw"
	case kinds["semaphore"] && len(kinds) <= 2 && (len(kinds) == 1 || kinds["semaphore-member"]):
		return "semaphore"
	}
	return ""
}

// entryKind says what an entry named n of a dlock lock directory belongs
// to: "plain", "queue", "rw", "rw-member", "semaphore", "semaphore-member",
// or "" (nothing dlock would put there).
func entryKind(n string) string {
	switch {
	case numbered(strings.TrimSuffix(n, ".q"), "free.") || strings.HasPrefix(n, "held.") && strings.Count(n, ".") >= 10:
		return "plain"
	case n == "queue":
		return "queue"
	case numbered(n, "rwlock."):
		return "rw"
	case n == "writer" || n == "readers" || strings.HasPrefix(n, ".writer.") || strings.HasPrefix(n, ".readers."):
		return "rw-member"
	case numbered(n, "size."):
		return "semaphore"
	case numbered(n, "slot."):
		return "semaphore-member"
	}
	return ""
}

// numbered: n is prefix and a number.
func numbered(n, prefix string) bool {
	v, ok := strings.CutPrefix(n, prefix)
	_, err := strconv.ParseUint(v, 10, 64)
	return ok && err == nil
}

// flockLockMode is the mode of a lock directory made for a file: every
// class of user that may read the file (and so flock it) may take the
// lock.
func flockLockMode(fi os.FileInfo) os.FileMode {
	m := os.FileMode(0o700)
	p := fi.Mode().Perm()
	if p&0o040 != 0 {
		m |= 0o070
	}
	if p&0o004 != 0 {
		m |= 0o007
	}
	return m
}
