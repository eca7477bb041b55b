// SPDX-License-Identifier: Apache-2.0

package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// This file is the one description of dlock's command line: "dlock help",
// "dlock SUBCOMMAND -h", the man page dlock(1) (man.go) and the shell
// completions (completion.go) are all rendered from the tables below and
// from the flags each subcommand registers, so that none can drift from
// the others. A new subcommand is a row of commands; a new flag is
// registered in the subcommand's parser and appears everywhere.

// command is one subcommand of dlock.
type command struct {
	name     string
	synopsis []string // what follows "dlock NAME", one line per form
	summary  string   // one line: "dlock help" and the man page's NAME list
	help     string   // the long help: "dlock help NAME", "dlock NAME -h", the man page
	run      func(args []string, stdout, stderr io.Writer) int
	hidden   bool // internal (the supervisor, the holder): in no help or completion
	// flags lists the options of a subcommand whose parser is not a
	// flag.FlagSet made by newFlags (a getopt-style one, say); nil: read
	// them from the FlagSet (describeFlags).
	flags func() []flagDoc
}

// topic is a part of the manual that is no subcommand: "dlock help TOPIC"
// and a section of the man page.
type topic struct {
	name    string // "dlock help NAME"
	section string // the man page's section heading
	summary string
	text    string
}

// commands lists the subcommands in the order help shows them. (Set in
// init: their run functions refer to the table.)
var commands []*command

func init() {
	commands = []*command{
		{name: "run", synopsis: []string{
			"[flags] PATH [flags] -- COMMAND [ARGS...]",
			"[flags] PATH [flags] -c 'SHELL COMMAND'",
		}, summary: "run COMMAND (and all it starts) while holding the lock at PATH",
			help: runHelp, run: func(args []string, _, stderr io.Writer) int { return runCmd(args, stderr) }},
		{name: "hold", synopsis: []string{"[flags] -pid PID PATH"},
			summary: "hold the lock while process PID lives (the rest of a script)",
			help:    holdHelp, run: holdCmd},
		{name: "release", synopsis: []string{""},
			summary: `release what "dlock hold" holds, before the script ends`,
			help:    releaseHelp, run: releaseCmd},
		{name: "status", synopsis: []string{"[-json|-q] PATH..."},
			summary: "show whether locks are free or held, and by whom",
			help:    statusHelp, run: statusCmd},
		{name: "break", synopsis: []string{"[-force] PATH"},
			summary: "free a lock whose holder is gone or stale",
			help:    breakHelp, run: breakCmd},
		{name: "flock", synopsis: []string{
			"[options] FILE|DIRECTORY COMMAND [ARGS...]",
			"[options] FILE|DIRECTORY -c 'SHELL COMMAND'",
			"[options] NUMBER",
			"[options] --fd NUMBER COMMAND [ARGS...]",
		}, summary: "util-linux flock(1)'s command line (also as a link named flock)",
			help: flockProse, flags: flockFlagDocs,
			run: func(args []string, stdout, stderr io.Writer) int { return flockMain("flock", args, stdout, stderr) }},
		{name: "version", synopsis: []string{"[-json]"},
			summary: "print the version, the commit it was built from and the Go that built it",
			help:    versionHelp, run: versionCmd},
		{name: "completion", synopsis: []string{"bash|zsh|fish"},
			summary: "print a shell completion script",
			help:    completionHelp, run: completionCmd},
		{name: "help", synopsis: []string{"[SUBCOMMAND|TOPIC]"},
			summary: "show this help, a subcommand's or a topic's",
			help:    helpHelp, run: helpCmd},
		{name: superviseCmd, hidden: true, run: func(args []string, _, stderr io.Writer) int { return superviseMain(args, stderr) }},
		{name: holderCmd, hidden: true, run: func(args []string, _, stderr io.Writer) int { return holderMain(args, stderr) }},
		{name: flockHolderCmd, hidden: true, run: func(args []string, _, stderr io.Writer) int { return flockHolderMain(args, stderr) }},
	}
}

// topics are the parts of the manual that are no subcommand.
var topics = []*topic{
	{name: "environment", section: "ENVIRONMENT", summary: "the variables dlock sets and reads", text: environmentHelp},
	{name: "exit-status", section: "EXIT STATUS", summary: "what each exit status means", text: exitStatusHelp},
	{name: "files", section: "FILES", summary: "the lock directory and what else dlock touches", text: filesHelp},
	{name: "servers", section: "LOCKS ON A SERVER", summary: "PATH as a URL: postgres://, etcd:// and their helper programs", text: serversHelp},
}

// Global options, before any subcommand.
var globalFlags = []flagDoc{
	{names: []string{"-V", "-version"}, usage: `print the version, as "dlock version" does`},
	{names: []string{"-h", "-help"}, usage: `show the help, as "dlock help" does`},
}

// oneLine is the manual's NAME line: what dlock is, in one line.
const oneLine = "guard a command with a lock that works on shared filesystems"

// description opens the help and the man page's DESCRIPTION.
const description = `A lock is a directory at PATH, created on first use (its parent must exist).
It works where flock(1) does not: on NFS, SMB, sshfs and volumes shared
between containers or hosts. A holder refreshes its lock every TIMEOUT/3; a
lock whose holder died on this host is reclaimed at once, one whose holder
stopped refreshing it (a crashed host, a hung process) after TIMEOUT.
Durations are seconds when plain numbers (30, 0.5); Go's units work too
(500ms, 2m). Flags start with one dash (-patience) or two (--patience).
PATH may also be a URL, postgres://... or etcd://..., for hosts that share no
filesystem but reach a server: see "dlock help servers".`

const versionHelp = `Prints the version of dlock: the module version it was built from (a
release tag, a pseudo-version of a commit, or "devel" for a build from a
work tree), the version control revision and its time, whether the work
tree had changes, the Go release that built it and the library's version
when it came from another module. With -json, one JSON object with the
fields version, module, revision, time, modified, go, os, arch and library.

"dlock -V" and "dlock --version" print the same as "dlock version".
`

const completionHelp = `Prints a script that teaches SHELL to complete dlock's subcommands, flags,
topics, lock paths and, after "--", commands. The packages install these
scripts where each shell finds them; by hand:

Examples:
  # bash: for this shell, or for every new one
  source <(dlock completion bash)
  dlock completion bash > ~/.local/share/bash-completion/completions/dlock

  # zsh: a directory in $fpath, then compinit
  dlock completion zsh > "${fpath[1]}/_dlock"

  # fish
  dlock completion fish > ~/.config/fish/completions/dlock.fish
`

const helpHelp = `Shows the overview of dlock, the help of a SUBCOMMAND (as "dlock SUBCOMMAND
-h" does), or a TOPIC of the manual. The man page dlock(1) holds all of
them.
`

const environmentHelp = `dlock run sets, for COMMAND, and dlock hold prints, for the script to eval:
  DLOCK_PATH     the lock's absolute path
  DLOCK_FENCE    the fencing token: a number that rises on every acquisition
                 of the lock by anyone; a resource that remembers the largest
                 it has seen and refuses smaller ones is safe from a late holder
dlock hold also prints, and dlock release reads:
  DLOCK_HOLDER   the pid of the background process that holds the lock

dlock reads:
  DLOCK_WAKE_HINTS
                 the default of -wake-hints: "auto", an IP address (and
                 :PORT) to hear of releases from other hosts at, or "off"
  DLOCK_UNSAFE_FS
                 "allow" turns off the refusal of filesystems where no lock
                 can be safe (smbnetfs, gvfs, s3fs); only for tests that show
                 what goes wrong there
  DLOCK_RUN_ID   internal: passed from dlock run to its supervising process
  DLOCK_BACKEND_FDS
                 internal: the pipes to a URL PATH's helper program, passed
                 from dlock run to its supervising process
For a URL PATH, DLOCK_PATH is the URL with its password hidden.
`

const exitStatusHelp = `dlock's own exit statuses (each subcommand's help says which it uses):
  0        success: COMMAND's own 0, the lock is held (hold), every PATH is
           free (status), the lock is free now (break)
  1        an error of dlock's (permission denied, not a lock, ...)
  2        a usage error: a bad command line
  3        status: a PATH is held (by a live or a stale holder)
  4        status: a PATH is not a lock directory, or is corrupt
  75       the lock stayed busy for all of PATIENCE (EX_TEMPFAIL; -conflict-exit,
           -E change it); break: a fresh lock was not broken without -force
  76       run: the lock was lost while the job ran, and the job was stopped
  126      run: COMMAND was found but could not be started
  127      run: COMMAND was not found
  128+N    run: COMMAND died of signal N, or signal N (HUP 129, INT 130,
           TERM 143) cancelled the wait for the lock before COMMAND ran
Otherwise dlock run exits with COMMAND's own status. A COMMAND that itself
exits 75 or 76 cannot be told from dlock's: pick another -E if that matters.
`

const filesHelp = `PATH
  The lock: a directory that dlock creates (mode 0755, or -mode) and never
  deletes. Its entries are dlock's own: the holder's state (held.*, free.*),
  the waiters' tickets and staging names. Put it on the filesystem that every
  competing process sees. Another layout at PATH (a reader/writer lock made
  with -s or -x, a semaphore made with -slots) holds one subdirectory per
  reader or slot. A regular file or a directory with other contents at PATH
  is not a lock: dlock refuses it and changes nothing.
/proc/self/mountinfo
  Read on Linux to refuse filesystems where no lock can be safe.
CGROUP/dlock-run-ID
  On Linux, where dlock may create cgroups (as root, or in a delegated cgroup
  v2 subtree), the cgroup that holds the job of dlock run, beside dlock's own
  cgroup CGROUP (under /sys/fs/cgroup); ID is random, one per run. It is
  removed when the job has ended.
dlock-backend-SCHEME
  The helper program that keeps the lock of a URL PATH (dlock-backend-postgres,
  dlock-backend-etcd): looked for in the directory of the dlock executable,
  then on PATH. See "dlock help servers".
`

const serversHelp = `PATH may be a URL instead of a directory, for processes on hosts that share
no filesystem but all reach a server. The lock is then a lease the server
keeps, and dlock run and dlock hold work as they do with a lock directory:
the job kept inside the lock and stopped before a successor may start,
DLOCK_FENCE, -n, -w, -E, -grace, TIMEOUT, the exit statuses. -s, -x and
-slots are refused (a URL names a plain lock); -mode and -max-clock-skew do
nothing there.

  postgres://USER@HOST:PORT/DATABASE?PARAMS#NAME   (or postgresql://)
      The lease row NAME in the table dlock_leases (pglock), created if
      missing. The rest is the libpq/pgx connection string, so the lock can
      be appended to a DATABASE_URL: "$DATABASE_URL#migrate". NAME may also
      be the parameter lock=NAME, and lock_table=TABLE names another table.
      Each statement stands alone: it works through PgBouncer in transaction
      pooling. Expiry is judged by the server's clock.
  etcd://HOST:2379[,HOST:2379...]/KEY
      The etcd lock at KEY, its leading / included (etcdlock), on the
      cluster's client endpoints (plain http; USER:PASSWORD@ for etcd's
      authentication). TIMEOUT is the lease's TTL, in whole seconds.

Each scheme's lock is kept by a helper program, dlock-backend-SCHEME, that
links the server's client library, so that dlock itself links none and
starts as quickly as flock(1). dlock looks for it in its own directory, then
on PATH:
  go install github.com/lockdir/dlock/pglock/cmd/dlock-backend-postgres@latest
  go install github.com/lockdir/dlock/etcdlock/cmd/dlock-backend-etcd@latest
dlock run starts the helper outside the job, hands it the URL on a pipe (not
on its command line, where ps would show a password), and asks it for the
lock; the helper refreshes the lease and applies the deadline rule on its own
clock: it gives the lock up MARGIN before the server could let another holder
in. The lock counts as lost, and the job is stopped (exit 76), when the helper
gives the lease up or finds it taken, when the helper dies, and when it falls
silent for half the reaction slack (stopped or hung). If dlock itself dies
holding the lock, the helper does not release it: the lease expires after
TIMEOUT, as the job may outlive dlock for a moment. Messages and DLOCK_PATH
show the URL with its password hidden. A directory whose name looks like a
URL is written ./NAME. dlock status asks a helper who holds a URL's lock;
dlock break reads lock directories only, so far, and refuses a URL (the
lease expires on its own; or delete it at the server: pglock's row in
dlock_leases, etcdlock's keys under KEY/).

Examples:
  # every replica runs this at start; one migrates, the others wait
  dlock run -w 600 "$DATABASE_URL#migrate" -- goose -dir migrations postgres "$DATABASE_URL" up

  # a nightly job on one host of many, skipped when another runs it
  dlock run -n etcd://10.0.0.1:2379,10.0.0.2:2379/locks/nightly -- ./nightly
`

// lookupCommand is the subcommand called name, or nil.
func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// lookupTopic is the topic called name, or nil.
func lookupTopic(name string) *topic {
	for _, t := range topics {
		if t.name == name {
			return t
		}
	}
	return nil
}

// visibleCommands are the subcommands users see.
func visibleCommands() []*command {
	var out []*command
	for _, c := range commands {
		if !c.hidden {
			out = append(out, c)
		}
	}
	return out
}

// usageText is the overview that "dlock help" prints.
func usageText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dlock: %s\n\nUsage:\n", oneLine)
	var lines [][2]string
	for _, c := range visibleCommands() {
		lines = append(lines, [2]string{strings.TrimSpace("dlock " + c.name + " " + c.synopsis[0]), c.summary})
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "  %-*s   %s\n", width, l[0], l[1])
	}
	b.WriteString("\nTopics (dlock help TOPIC):\n")
	width = 0
	for _, t := range topics {
		width = max(width, len(t.name))
	}
	for _, t := range topics {
		fmt.Fprintf(&b, "  %-*s   %s\n", width, t.name, t.summary)
	}
	fmt.Fprintf(&b, "\n%s\n\nRun \"dlock help SUBCOMMAND\" for its flags, exit statuses and examples;\n\"man dlock\" for all of it.\n", description)
	return b.String()
}

// synopsisText is the "Usage:" line(s) of a subcommand's help.
func synopsisText(c *command) string {
	var b strings.Builder
	for i, s := range c.synopsis {
		lead := "Usage:"
		if i > 0 {
			lead = "   or:"
		}
		fmt.Fprintln(&b, strings.TrimRight(lead+" dlock "+c.name+" "+s, " "))
	}
	return b.String()
}

// flagDoc describes one flag, for the help, the man page and completion.
type flagDoc struct {
	names []string // as typed, with their dashes ("-timeout", "-s", "--shared"); the first is the main one
	arg   string   // the value's placeholder; "" for a boolean flag
	def   string   // the default, "" when there is nothing to say
	usage string
}

// flagSets remembers the last FlagSet each subcommand's parser made, so
// that describeFlags can read the flags it registered.
var flagSets = map[string]*flag.FlagSet{}

// describeFlags lists the flags of subcommand c, as its own parser
// registers them: it runs the parser with -h, its output discarded, and
// reads the FlagSet that newFlags made. A subcommand without flags (or
// whose parser makes none) has none; one with a parser of another kind
// lists its own (command.flags).
func describeFlags(c *command) []flagDoc {
	if c.flags != nil {
		return c.flags()
	}
	delete(flagSets, c.name)
	saved := helpOut
	helpOut = io.Discard // where -h prints (the subcommand's stdout otherwise)
	c.run([]string{"-h"}, io.Discard, io.Discard)
	helpOut = saved
	if fs := flagSets[c.name]; fs != nil {
		return flagDocs(fs)
	}
	return nil
}

// flagDocs describes the flags registered in fs, in its order (by name).
func flagDocs(fs *flag.FlagSet) []flagDoc {
	var docs []flagDoc
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			arg = ""
		} else if arg == "value" {
			arg = "VALUE"
		}
		def := f.DefValue // unless the usage says it in its own words
		if def == "false" || def == "0" || def == "" || def == "0s" || strings.Contains(usage, "default ") {
			def = ""
		}
		docs = append(docs, flagDoc{names: []string{"-" + f.Name}, arg: arg, def: def, usage: usage})
	})
	return docs
}

// writeFlags prints flags as "dlock NAME -h" shows them.
func writeFlags(w io.Writer, docs []flagDoc) {
	for _, d := range docs {
		head := strings.Join(d.names, ", ")
		if d.arg != "" {
			head += " " + d.arg
		}
		fmt.Fprintf(w, "  %s\n", head)
		usage := d.usage
		if d.def != "" {
			usage += " (default " + d.def + ")"
		}
		for _, l := range wrap(usage, 72) {
			fmt.Fprintf(w, "      %s\n", l)
		}
	}
}

// wrap breaks s into lines of at most width columns, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// helpCmd is "dlock help [SUBCOMMAND|TOPIC]": help on stdout.
func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		c := lookupCommand("help")
		fmt.Fprintf(stdout, "%s\n%s", synopsisText(c), c.help)
		return 0
	}
	if len(args) == 0 {
		fmt.Fprint(stdout, usageText())
		return 0
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "dlock help: one SUBCOMMAND or TOPIC, not %q\n", strings.Join(args, " "))
		return exitUsage
	}
	if c := lookupCommand(args[0]); c != nil && !c.hidden {
		return c.run([]string{"-h"}, stdout, stdout)
	}
	if t := lookupTopic(args[0]); t != nil {
		fmt.Fprint(stdout, t.text)
		return 0
	}
	var names []string
	for _, c := range visibleCommands() {
		names = append(names, c.name)
	}
	for _, t := range topics {
		names = append(names, t.name)
	}
	fmt.Fprintf(stderr, "dlock: no help for %q; there is help for: %s\n", args[0], strings.Join(names, ", "))
	return exitUsage
}

// completionCmd is "dlock completion SHELL".
func completionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("completion", stderr)
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	shells := []string{"bash", "zsh", "fish"}
	if fs.NArg() != 1 || !slices.Contains(shells, fs.Arg(0)) {
		return usageError(fs, "give one shell: bash, zsh or fish")
	}
	var err error
	switch fs.Arg(0) {
	case "bash":
		_, err = io.WriteString(stdout, bashCompletion())
	case "zsh":
		_, err = io.WriteString(stdout, zshCompletion())
	case "fish":
		_, err = io.WriteString(stdout, fishCompletion())
	}
	if err != nil {
		fmt.Fprintf(stderr, "dlock completion: %v\n", err)
		return exitError
	}
	return 0
}

// flockProse is the flock personality's help past its synopsis, for "dlock
// help" and the man page ("dlock flock -h" prints flock's own layout,
// flockHelp, from the same options).
const flockProse = `util-linux flock(1)'s whole command line, with flock's options, exit
statuses and --verbose lines; invoked as "dlock flock", or as a link to
dlock named flock. Besides the kernel's lock on FILE, it takes a dlock
lock directory beside it (FILE.dlock; DIRECTORY/.flock.dlock; a dlock lock
directory itself when FILE is one) that every host mounting the same
filesystem sees, reclaimed when its holder dies or hangs, and held for all
that COMMAND starts (DLOCK_PATH and DLOCK_FENCE in its environment). -c
runs $SHELL (else /bin/sh). -w, --wait and --timeout are how long to wait,
as in flock; dlock's stale time is --stale-after. The descriptor form
(flock [options] NUMBER) holds the lock while the calling process keeps
that descriptor.

Exit status: COMMAND's; 1 (-E) when the lock was busy; 76 when the dlock
lock was lost while the job ran; 64 for a usage error; 65, 66, 69, 71, 73
as flock(1).
`

// flockFlagDocs lists the flock personality's options (flockOptions) for
// the man page and the completions, with their dashes as typed.
func flockFlagDocs() []flagDoc {
	var docs []flagDoc
	for _, o := range flockOptions {
		var names []string
		if o.short != 0 {
			names = append(names, "-"+string(o.short))
		}
		for _, l := range o.long {
			names = append(names, "--"+l)
		}
		docs = append(docs, flagDoc{names: names, arg: strings.ToUpper(o.arg), usage: o.help})
	}
	return append(docs, flagDoc{names: []string{"-c", "--command"}, arg: "COMMAND",
		usage: "run a single command string through the shell ($SHELL, or /bin/sh)"})
}
