// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write cmd/dlock/dlock.1 again from the help's source")

// TestManPageIsCurrent fails when dlock.1 differs from what the help's
// source renders: the man page cannot drift from "dlock help".
func TestManPageIsCurrent(t *testing.T) {
	got := manPage()
	if *update {
		if err := os.WriteFile("dlock.1", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("dlock.1")
	if err != nil {
		t.Fatalf("%v (write it: go test ./cmd/dlock -run TestManPageIsCurrent -update)", err)
	}
	if string(want) != got {
		t.Errorf("cmd/dlock/dlock.1 is not what the help's source renders; write it again: go test ./cmd/dlock -run TestManPageIsCurrent -update\n%s", firstDiff(string(want), got))
	}
}

// firstDiff shows the first line where a and b differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n  committed: " + x + "\n  rendered:  " + y
		}
	}
	return ""
}

// TestManPageCoversTheHelp checks that every subcommand, flag and topic
// of the help is in the man page.
func TestManPageCoversTheHelp(t *testing.T) {
	page := manPage()
	for _, c := range visibleCommands() {
		if !strings.Contains(page, `.SS "dlock `+roffText(c.name)+`"`) {
			t.Errorf("no section for dlock %s", c.name)
		}
		for _, d := range describeFlags(c) {
			for _, n := range d.names {
				if !strings.Contains(page, `\fB`+roffText(n)+`\fR`) {
					t.Errorf("dlock %s: flag %s missing", c.name, n)
				}
			}
		}
	}
	for _, tp := range topics {
		if !strings.Contains(page, ".SH "+tp.section+"\n") {
			t.Errorf("no section %s", tp.section)
		}
	}
	for _, code := range []int{0, exitError, exitUsage, exitHeld, exitNotLock, exitBusy, exitLost, exitCantExec, exitNotFound} {
		if !strings.Contains(exitStatusHelp, "\n  "+strconv.Itoa(code)+" ") {
			t.Errorf("exit status %d is not in the exit-status topic", code)
		}
	}
	for _, env := range []string{"DLOCK_PATH", "DLOCK_FENCE", "DLOCK_HOLDER", "DLOCK_UNSAFE_FS", "DLOCK_RUN_ID"} {
		if !strings.Contains(environmentHelp, env) {
			t.Errorf("%s is not in the environment topic", env)
		}
	}
}

// TestManPageRendersWithoutWarnings formats the page as man(1) does, with
// every warning on: none may be printed.
func TestManPageRendersWithoutWarnings(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff here")
	}
	cmd := exec.Command(groff, "-ww", "-b", "-man", "-Tutf8", "-z")
	cmd.Stdin = strings.NewReader(manPage())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("groff -ww -man: %v\n%s", err, stderr.String())
	}
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "--warnings", "-l", "dlock.1")
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man --warnings -l dlock.1: %v\n%s", err, stderr.String())
		}
		if !bytes.Contains(out, []byte("dlock run")) {
			t.Errorf("man -l dlock.1 shows no dlock run:\n%s", out)
		}
	}
}
