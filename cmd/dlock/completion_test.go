// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completeInBash loads the bash completion into a real bash and asks it
// to complete words (the last is the word being typed), as readline
// does: COMP_WORDS, COMP_CWORD, then _dlock; it returns COMPREPLY.
func completeInBash(t *testing.T, script string, words ...string) []string {
	t.Helper()
	const driver = `source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_dlock 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command("bash", append([]string{"-c", driver, "bash", script}, words...)...).Output()
	if err != nil {
		t.Fatalf("bash completing %q: %v", words, err)
	}
	var reply []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			reply = append(reply, l)
		}
	}
	slices.Sort(reply)
	return reply
}

func writeCompletion(t *testing.T, shell string) string {
	t.Helper()
	var out, errb strings.Builder
	if code := dispatch([]string{"completion", shell}, &out, &errb); code != 0 {
		t.Fatalf("dlock completion %s: exit %d: %s", shell, code, errb.String())
	}
	path := filepath.Join(t.TempDir(), "dlock."+shell)
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash here")
	}
	script := writeCompletion(t, "bash")
	// Flag names come from the parsers: ask them, so that a renamed flag
	// changes what is expected, not whether the test passes.
	withPrefix := func(sub, prefix string) []string {
		all, _ := spelledFlags(describeFlags(lookupCommand(sub)))
		var out []string
		for _, f := range all {
			if strings.HasPrefix(f, prefix) {
				out = append(out, f)
			}
		}
		slices.Sort(out)
		return out
	}
	_, valued := spelledFlags(describeFlags(lookupCommand("run")))
	plainValued := "" // a flag of run that takes a value but has no hints
	for _, f := range valued {
		if _, hinted := valueHints[f]; !hinted {
			plainValued = f
			break
		}
	}
	for _, tc := range []struct {
		words []string
		want  []string // exactly, or
		has   []string // among others
	}{
		{words: []string{"dlock", "r"}, want: []string{"release", "run"}},
		{words: []string{"dlock", ""}, has: []string{"break", "completion", "help", "hold", "release", "run", "status", "version"}},
		{words: []string{"dlock", "-"}, want: []string{"-V", "-h", "-help", "-version"}},
		{words: []string{"dlock", "run", "-stop-"}, want: []string{"-stop-leftovers"}},
		{words: []string{"dlock", "run", "-s"}, want: withPrefix("run", "-s"), has: []string{"-s", "-slots", "-stop-leftovers"}},
		{words: []string{"dlock", "hold", "-p"}, want: withPrefix("hold", "-p"), has: []string{"-pid"}},
		{words: []string{"dlock", "status", "-"}, want: []string{"-json", "-q"}},
		{words: []string{"dlock", "break", "-"}, want: []string{"-force"}},
		{words: []string{"dlock", "version", "-"}, want: []string{"-json"}},
		// A flag's value: -mode's modes; nothing after another flag.
		{words: []string{"dlock", "run", "-mode", ""}, want: []string{"0755", "0775", "0777"}},
		{words: []string{"dlock", "run", "--mode", "07"}, want: []string{"0755", "0775", "0777"}},
		{words: []string{"dlock", "run", "--mode", "=", ""}, want: []string{"0755", "0775", "0777"}},
		{words: []string{"dlock", "run", "-w", "=", "5", "/tmp/l", "ech"}, has: []string{"echo"}},
		{words: []string{"dlock", "run", plainValued, "-"}, want: nil},
		// Flags after PATH, and after a flag's value.
		{words: []string{"dlock", "run", "-w", "5", "/tmp/l", "-q"}, want: []string{"-q"}},
		// COMMAND after PATH, with or without "--"; then its arguments are files.
		{words: []string{"dlock", "run", "/tmp/l", "--", "ech"}, has: []string{"echo"}},
		{words: []string{"dlock", "run", "-n", "/tmp/l", "ech"}, has: []string{"echo"}},
		{words: []string{"dlock", "run", "/tmp/l", "--", "ls", "-"}, want: nil},
		{words: []string{"dlock", "help", "ex"}, want: []string{"exit-status"}},
		{words: []string{"dlock", "help", "r"}, want: []string{"release", "run"}},
		{words: []string{"dlock", "completion", ""}, want: []string{"bash", "fish", "zsh"}},
	} {
		got := completeInBash(t, script, tc.words...)
		for _, w := range tc.has {
			if !slices.Contains(got, w) {
				t.Errorf("%q: %q lacks %q", strings.Join(tc.words, " "), got, w)
			}
		}
		if (tc.has == nil || tc.want != nil) && !slices.Equal(got, tc.want) {
			t.Errorf("%q: completed %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
	// Every flag of every subcommand is offered.
	for _, c := range visibleCommands() {
		all, _ := spelledFlags(describeFlags(c))
		if len(all) == 0 {
			continue
		}
		got := completeInBash(t, script, "dlock", c.name, "-")
		if !slices.Equal(got, slices.Sorted(slices.Values(all))) {
			t.Errorf("dlock %s -<TAB>: %q, want %q", c.name, got, all)
		}
	}
	out, err := exec.Command("bash", "-c", `source "$1"; complete -p dlock`, "bash", script).Output()
	if err != nil || !strings.Contains(string(out), "-F _dlock dlock") {
		t.Errorf("complete -p dlock: %v %q", err, out)
	}
}

func TestFishCompletion(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("no fish here")
	}
	script := writeCompletion(t, "fish")
	for _, tc := range []struct{ line, want string }{
		{"dlock ru", "run"},
		{"dlock run -stop", "-stop-leftovers"},
		{"dlock status -j", "-json"},
		{"dlock help exit", "exit-status"},
		{"dlock completion z", "zsh"},
		{"dlock run -mode 07", "0777"},
	} {
		out, err := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, script, tc.line).CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		var words []string
		for _, l := range strings.Split(string(out), "\n") {
			words = append(words, strings.SplitN(l, "\t", 2)[0])
		}
		if !slices.Contains(words, tc.want) {
			t.Errorf("fish completes %q to %q, want %q among them", tc.line, words, tc.want)
		}
	}
}

func TestZshCompletion(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("no zsh here")
	}
	script := writeCompletion(t, "zsh")
	if out, err := exec.Command("zsh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// Loaded the way a user does: compinit, then the file; compdef must
	// have registered _dlock for dlock.
	dir := t.TempDir()
	out, err := exec.Command("zsh", "-f", "-c", `autoload -U compinit; compinit -u -d "$2/zcompdump"; source "$1"; print -r -- $_comps[dlock]`, "zsh", script, dir).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_dlock" {
		t.Errorf("zsh: compdef did not register _dlock: %v\n%s", err, out)
	}
}

// A subcommand whose parser is no FlagSet (flock's getopt-style options)
// lists its flags itself, with their dashes: they reach the completions
// and the man page as they are typed.
func TestCompletionOfASubcommandWithItsOwnFlags(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash here")
	}
	saved := commands
	t.Cleanup(func() { commands = saved })
	commands = append(slices.Clone(saved), &command{
		name: "gnu", synopsis: []string{"[options] FILE COMMAND"}, summary: "a getopt-style subcommand", help: "Test.\n",
		run: func([]string, io.Writer, io.Writer) int { return 0 },
		flags: func() []flagDoc {
			return []flagDoc{
				{names: []string{"-s", "--shared"}, usage: "get a shared lock"},
				{names: []string{"-w", "--wait"}, arg: "secs", usage: "wait at most secs"},
				{names: []string{"--stale-after"}, arg: "secs", usage: "TIMEOUT"},
			}
		},
	})
	script := writeCompletion(t, "bash")
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"dlock", "gnu", "--s"}, []string{"--shared", "--stale-after"}},
		{[]string{"dlock", "gnu", "-"}, []string{"--shared", "--stale-after", "--wait", "-s", "-w"}},
		{[]string{"dlock", "gnu", "--wait", "-"}, nil},
		{[]string{"dlock", "gnu", "--wait=5", "-s", "--sh"}, []string{"--shared"}},
		// bash splits --wait=5 into three words.
		{[]string{"dlock", "gnu", "--wait", "=", "5", "-s", "--sh"}, []string{"--shared"}},
	} {
		if got := completeInBash(t, script, tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: completed %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
	page := manPage()
	for _, want := range []string{`.SS "dlock gnu"`, `\fB\-s\fR, \fB\-\-shared\fR`, `\fB\-\-stale\-after\fR \fIsecs\fR`} {
		if !strings.Contains(page, want) {
			t.Errorf("the man page lacks %q", want)
		}
	}
	if _, err := exec.LookPath("fish"); err == nil {
		fish := writeCompletion(t, "fish")
		out, err := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, fish, "dlock gnu --sh").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "--shared") {
			t.Errorf("fish completes %q to %q (%v)", "dlock gnu --sh", out, err)
		}
	}
}
