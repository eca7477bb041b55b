// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"strings"
)

// manPage renders the man page dlock(1) from the tables of commands.go
// and the flags each subcommand registers: the same source as "dlock
// help". cmd/dlock/dlock.1 is its output, committed so that it can be
// read and packaged without building dlock; TestManPageIsCurrent fails
// when the two differ (go test ./cmd/dlock -run TestManPageIsCurrent
// -update writes it again).
func manPage() string {
	var b strings.Builder
	b.WriteString(`.\" Generated from cmd/dlock/commands.go, the source of "dlock help": do not edit.
.\" To write it again: go test ./cmd/dlock -run TestManPageIsCurrent -update
.\" SPDX-License-Identifier: Apache-2.0
.TH DLOCK 1 "" "dlock" "User Commands"
.nh
.ad l
.SH NAME
dlock \- ` + roffText(oneLine) + `
.SH SYNOPSIS
.nf
`)
	for _, c := range visibleCommands() {
		for _, s := range c.synopsis {
			fmt.Fprintf(&b, "\\fBdlock %s\\fR %s\n", roffText(c.name), roffText(s))
		}
	}
	b.WriteString("\\fBdlock\\fR \\-V | \\-h\n.fi\n.SH DESCRIPTION\n")
	b.WriteString(roffBody(description))
	b.WriteString(".PP\nOptions before any subcommand:\n")
	writeManFlags(&b, globalFlags)
	b.WriteString(".SH COMMANDS\n")
	for _, c := range visibleCommands() {
		fmt.Fprintf(&b, ".SS \"dlock %s\"\n", roffText(c.name))
		b.WriteString(".nf\n")
		for _, s := range c.synopsis {
			fmt.Fprintf(&b, "\\fBdlock %s\\fR %s\n", roffText(c.name), roffText(s))
		}
		b.WriteString(".fi\n.PP\n")
		b.WriteString(roffBody(c.help))
		if docs := describeFlags(c); len(docs) > 0 {
			b.WriteString(".PP\nFlags:\n")
			writeManFlags(&b, docs)
		}
	}
	for _, t := range topics {
		fmt.Fprintf(&b, ".SH %s\n", t.section)
		b.WriteString(roffBody(t.text))
	}
	b.WriteString(`.SH SEE ALSO
.BR flock (1),
.BR flock (2),
.BR setsid (1),
.BR systemd.kill (5)
.PP
The README of dlock and of its command (cmd/dlock/README.md) in the source,
and the Go library's documentation: \fBgo doc github.com/lockdir/dlock\fR.
`)
	return b.String()
}

// writeManFlags renders flags as a tagged list.
func writeManFlags(b *strings.Builder, docs []flagDoc) {
	for _, d := range docs {
		var spelled []string
		for _, n := range d.names {
			spelled = append(spelled, `\fB`+roffText(n)+`\fR`)
		}
		head := strings.Join(spelled, ", ")
		if d.arg != "" {
			head += ` \fI` + roffText(d.arg) + `\fR`
		}
		usage := d.usage
		if d.def != "" {
			usage += " (default " + d.def + ")"
		}
		fmt.Fprintf(b, ".TP\n%s\n%s\n", head, roffLine(usage))
	}
}

// roffText escapes s for use inside a line of roff: backslashes print as
// such, and hyphens are the ASCII hyphen-minus that options are typed with.
func roffText(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// roffLine escapes a whole input line: one that starts with a dot or a
// quote would be read as a request.
func roffLine(s string) string {
	s = roffText(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffBody renders help text: paragraphs (lines separated by a blank
// line) are filled; indented lines (lists, examples) are kept as they are,
// indented.
func roffBody(text string) string {
	var b strings.Builder
	inBlock, newPara := false, false
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i, l := range lines {
		indented := strings.HasPrefix(l, " ")
		switch {
		case strings.TrimSpace(l) == "":
			// A blank line between two indented lines stays in the block.
			if inBlock && i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") {
				b.WriteString(".sp\n")
				continue
			}
			if inBlock {
				b.WriteString(".fi\n.RE\n")
				inBlock = false
			}
			newPara = true
		case indented:
			if !inBlock {
				b.WriteString(".RS 2\n.nf\n")
				inBlock = true
			}
			b.WriteString(roffLine(l[2:]) + "\n")
		default:
			if inBlock {
				b.WriteString(".fi\n.RE\n")
				inBlock = false
				if !newPara {
					b.WriteString(".br\n")
				}
			}
			if newPara {
				b.WriteString(".PP\n")
				newPara = false
			}
			b.WriteString(roffLine(l) + "\n")
		}
	}
	if inBlock {
		b.WriteString(".fi\n.RE\n")
	}
	return b.String()
}
