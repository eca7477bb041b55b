package main

import (
	"fmt"
	"strings"
)

// A GNU getopt_long parser, for the flock personality: short options
// (-n), combined (-xn), with an argument attached or next (-w5, -w 5),
// long options (--wait 5, --wait=5) and their unambiguous abbreviations
// (--nonblock for --nonblocking), "--" to end options. Like flock's own
// "+" optstring, parsing stops at the first operand: what follows is
// COMMAND's.

// optSpec is one option: the single source of the flock personality's
// parsing and of its help.
type optSpec struct {
	id    string   // what the parser reports
	short byte     // 0: long only
	long  []string // long names; the first is the one help shows
	arg   string   // "": takes no argument; else its name in help
	help  string
	dlock bool // dlock's own addition to flock's options
}

// parsedOpt is one option as given.
type parsedOpt struct {
	id      string
	value   string
	spelled string // as the user wrote it, for messages
}

// getoptError is a bad option: unknown, ambiguous, or missing its
// argument. Its message is getopt's (via flock's warnx).
type getoptError struct{ msg string }

func (e *getoptError) Error() string { return e.msg }

// getoptLong parses args against specs. stop reports arguments that are
// options of the caller's own (flock's -c and --command): they are
// returned with the id "" and parsing goes on. It returns the options in
// order and the operands that follow them.
func getoptLong(args []string, specs []optSpec, special func(string) bool) ([]parsedOpt, []string, error) {
	var opts []parsedOpt
	i := 0
	for i < len(args) {
		a := args[i]
		switch {
		case a == "--":
			return opts, args[i+1:], nil
		case len(a) < 2 || a[0] != '-':
			return opts, args[i:], nil
		case special != nil && special(a):
			opts = append(opts, parsedOpt{spelled: a})
			i++
			continue
		case strings.HasPrefix(a, "--"):
			name, value, hasValue := strings.Cut(a[2:], "=")
			s, err := findLong(specs, name, a)
			if err != nil {
				return opts, nil, err
			}
			switch {
			case s.arg == "" && hasValue:
				return opts, nil, &getoptError{fmt.Sprintf("unrecognized option '%s'", a)}
			case s.arg != "" && !hasValue:
				if i+1 >= len(args) {
					return opts, nil, &getoptError{fmt.Sprintf("option '%s' requires an argument", a)}
				}
				i++
				value = args[i]
			}
			opts = append(opts, parsedOpt{id: s.id, value: value, spelled: "--" + s.long[0]})
			i++
			continue
		}
		// A cluster of short options.
		for j := 1; j < len(a); j++ {
			s := findShort(specs, a[j])
			if s == nil {
				return opts, nil, &getoptError{fmt.Sprintf("unrecognized option '%s'", a)}
			}
			if s.arg == "" {
				opts = append(opts, parsedOpt{id: s.id, spelled: "-" + string(a[j])})
				continue
			}
			value := a[j+1:]
			if value == "" {
				if i+1 >= len(args) {
					return opts, nil, &getoptError{fmt.Sprintf("option '%s' requires an argument", a)}
				}
				i++
				value = args[i]
			}
			opts = append(opts, parsedOpt{id: s.id, value: value, spelled: "-" + string(a[j])})
			break
		}
		i++
	}
	return opts, nil, nil
}

func findShort(specs []optSpec, c byte) *optSpec {
	for i := range specs {
		if specs[i].short == c && c != 0 {
			return &specs[i]
		}
	}
	return nil
}

// findLong finds a long option by its name or an abbreviation of it that
// names one option only (as getopt_long does: abbreviations of several
// names of the same option are not ambiguous).
func findLong(specs []optSpec, name, spelled string) (*optSpec, error) {
	var found *optSpec
	for i := range specs {
		for _, l := range specs[i].long {
			if l == name {
				return &specs[i], nil
			}
			if strings.HasPrefix(l, name) && name != "" {
				if found != nil && found.id != specs[i].id {
					return nil, &getoptError{fmt.Sprintf("unrecognized option '%s'", spelled)}
				}
				found = &specs[i]
			}
		}
	}
	if found == nil {
		return nil, &getoptError{fmt.Sprintf("unrecognized option '%s'", spelled)}
	}
	return found, nil
}
