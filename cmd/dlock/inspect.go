package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lockdir/dlock"
)

const statusHelp = `Shows, for each PATH, whether the lock is free or held, and by whom: pid and
host of the holder, how long it has held the lock, when it last refreshed it,
its TIMEOUT and fence, and whether it is stale (its process is gone, or it has
not refreshed the lock for its TIMEOUT) so that the next waiter will reclaim it.
Nothing is changed. A missing directory is a free lock.

With -json, prints one JSON object per PATH, one per line (JSON Lines):
  path             the lock's absolute path
  exists           the lock directory exists
  held             someone holds the lock
  fence            the holder's fence; the last holder's when free
  stale            the lock may be reclaimed now (dead, or not refreshed for its TIMEOUT)
  dead             the holder ran on this host and its process is gone
  age_seconds      seconds since the holder last refreshed the lock
  holder           null when free, else an object:
    pid, host, host_id       the holder process and its host
    since, beat              when it acquired and last refreshed the lock (RFC 3339, its clock)
    held_seconds             how long it has held the lock
    timeout_seconds          its TIMEOUT
    unknown                  the lock's state could not be read: only "entry" is known
    entry                    the raw state entry name
  error            present only when PATH could not be read (not a lock, corrupt, ...)

Exit status, for scripts to branch on (with several PATHs, the first that
applies):
  4  a PATH is not a lock directory (a file, another directory) or is corrupt
  1  a PATH could not be read (permission denied, I/O error)
  3  a PATH is held (by a live holder, or a stale one: see "stale")
  0  every PATH is free (a missing directory is a free lock)
  2  a usage error
Errors are reported on stderr, after the others.

Examples:
  dlock status /var/lock/backup.lock
  dlock status -q /var/lock/backup.lock; case $? in 0) echo free;; 3) echo held;; *) echo "not a lock";; esac
  dlock status -json /shared/locks/* | jq -r 'select(.held) | "\(.path) \(.holder.host) \(.holder.pid)"'
`

const breakHelp = `Frees the lock at PATH if its holder is gone (a process on this host that no
longer exists) or stale (it has not refreshed the lock for its TIMEOUT), and
says what it did. A fresh lock is left alone (exit 75) unless -force is given:
then its holder finds out at its next refresh that it lost the lock (a
"dlock run" holder stops its job and exits 76). Breaking reclaims and then
releases the lock, so fences keep rising; the directory is never deleted.
Where the library can keep a broken lock held (Lock.BreakHold), -force holds
it until the broken holder has stopped (its process is gone, on this host,
or its TIMEOUT has passed), so that its job is dead before the next holder
starts; otherwise the lock is free at once.

Exit status: 0 when the lock is free now (broken, or it was free already);
75 when a fresh lock was not broken; 1 for another error; 2 for a usage error.

Examples:
  dlock break /var/lock/backup.lock          # only if its holder died or hung
  dlock break -force /shared/locks/migrate   # take it away from a live holder
`

// jsonStatus is the -json form of a dlock.Status: field names are stable.
type jsonStatus struct {
	Path       string      `json:"path"`
	Exists     bool        `json:"exists"`
	Held       bool        `json:"held"`
	Fence      uint64      `json:"fence"`
	Stale      bool        `json:"stale"`
	Dead       bool        `json:"dead"`
	AgeSeconds float64     `json:"age_seconds"`
	Holder     *jsonHolder `json:"holder"`
	Error      string      `json:"error,omitempty"`
}

type jsonHolder struct {
	PID            int        `json:"pid"`
	Host           string     `json:"host"`
	HostID         string     `json:"host_id"`
	Since          *time.Time `json:"since"`
	Beat           *time.Time `json:"beat"`
	HeldSeconds    float64    `json:"held_seconds"`
	TimeoutSeconds float64    `json:"timeout_seconds"`
	Unknown        bool       `json:"unknown"`
	Entry          string     `json:"entry"`
}

func toJSON(s dlock.Status) jsonStatus {
	j := jsonStatus{Path: s.Path, Exists: s.Exists, Held: s.Held, Fence: s.Fence, Stale: s.Stale, Dead: s.Dead, AgeSeconds: s.Age.Seconds()}
	if s.Held {
		h := s.Holder
		j.Holder = &jsonHolder{PID: h.PID, Host: h.Host, HostID: h.HostID, TimeoutSeconds: h.Timeout.Seconds(), Unknown: h.Unknown, Entry: h.Entry}
		if !h.Since.IsZero() {
			j.Holder.Since = &h.Since
		}
		if !h.Beat.IsZero() {
			j.Holder.Beat = &h.Beat
		}
		if !h.Since.IsZero() && !h.Beat.IsZero() {
			j.Holder.HeldSeconds = (h.Beat.Sub(h.Since) + s.Age).Seconds()
		}
	}
	return j
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	asJSON := fs.Bool("json", false, "print JSON, one object per PATH and line")
	quiet := fs.Bool("q", false, "print nothing on stdout: only the exit status tells")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if fs.NArg() == 0 {
		return usageError(fs, "missing PATH")
	}
	for _, p := range fs.Args() {
		if p == "" {
			return usageError(fs, "a PATH is empty")
		}
	}
	var failed []error
	held, notLock := false, false
	enc := json.NewEncoder(stdout)
	for _, path := range expandLocks(fs.Args()) {
		s, err := dlock.Inspect(path)
		if backendScheme(path) != "" { // a URL: its helper says (backend.go)
			s, err = inspectBackend(path)
		}
		if err != nil {
			failed = append(failed, fmt.Errorf("%s", explainRead(err, path)))
			notLock = notLock || errors.Is(err, dlock.ErrNotLock) || errors.Is(err, dlock.ErrCorrupt)
		}
		held = held || err == nil && s.Held
		switch {
		case *quiet:
		case *asJSON:
			j := toJSON(s)
			if j.Path == "" {
				j.Path = path
			}
			if err != nil {
				j = jsonStatus{Path: j.Path, Error: err.Error()}
			}
			if err := enc.Encode(j); err != nil {
				fmt.Fprintf(stderr, "dlock: %v\n", err)
				return exitError
			}
		case err == nil:
			fmt.Fprintln(stdout, statusText(s, path))
		}
	}
	for _, err := range failed {
		fmt.Fprintf(stderr, "%v\n", err)
	}
	switch {
	case notLock:
		return exitNotLock
	case len(failed) > 0:
		return exitError
	case held:
		return exitHeld
	}
	return 0
}

func breakCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("break", stderr)
	force := fs.Bool("force", false, "break the lock even if its holder is alive and refreshing it")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	switch fs.NArg() {
	case 0:
		return usageError(fs, "missing PATH")
	case 1:
	default:
		return usageError(fs, "one PATH at a time (got %d)", fs.NArg())
	}
	path := fs.Arg(0)
	if backendScheme(path) != "" {
		fmt.Fprintln(stderr, errServerLock(path))
		return exitError
	}
	if path == "" {
		return usageError(fs, "PATH is empty")
	}
	slots := expandLocks([]string{path})
	if len(slots) == 1 && slots[0] == path {
		return breakOne(path, *force, stdout, stderr)
	}
	// A semaphore or a reader/writer lock: each of its locks in turn.
	code := 0
	for _, p := range slots {
		if c := breakOne(p, *force, stdout, stderr); c > code {
			code = c
		}
	}
	return code
}

// breakOne breaks the plain lock at path.
func breakOne(path string, force bool, stdout, stderr io.Writer) int {
	l, err := dlock.New(path)
	if err != nil {
		fmt.Fprintln(stderr, explain(err, path))
		return exitError
	}
	brk, holds := l.Break, false
	if bh, ok := any(l).(breakHolder); ok && force {
		brk, holds = bh.BreakHold, true
	}
	before, err := brk(force)
	// Break compares the holder's state entry between two reads, and a
	// live holder renames its entry at every refresh: a forced break can
	// fail with ErrBusy although the holder is the same. Try again while
	// it is (same token).
	for i := 0; i < 5 && force && errors.Is(err, dlock.ErrBusy) && before.Held; i++ {
		now, serr := l.Status()
		if serr == nil && !now.Held {
			before, err = now, nil // released meanwhile
			break
		}
		if serr != nil || now.Holder.Token != before.Holder.Token {
			break
		}
		before, err = brk(true)
	}
	if holds && err == nil {
		if before.Held && !before.Dead && !before.Stale {
			waitBrokenHolder(before, stdout)
		}
		if uerr := l.Unlock(); uerr != nil && !errors.Is(uerr, dlock.ErrNotHeld) {
			err = uerr
		}
	}
	switch {
	case errors.Is(err, dlock.ErrBusy) && before.Held && !force:
		say(stderr, "not breaking %s: it is %s, TIMEOUT %s; use -force to break a live lock", path, describeHolder(before.Holder, before.Age), before.Holder.Timeout)
		return exitBusy
	case errors.Is(err, dlock.ErrBusy):
		fmt.Fprintln(stderr, strings.ReplaceAll(explain(err, path), "use force", "use -force"))
		return exitBusy
	case err != nil:
		fmt.Fprintln(stderr, explain(err, path))
		return exitError
	case !before.Exists:
		fmt.Fprintf(stdout, "%s: free (no lock directory): nothing to break\n", before.Path)
	case !before.Held:
		fmt.Fprintf(stdout, "%s: free (last fence %d): nothing to break\n", before.Path, before.Fence)
	default:
		why := "forced: the holder was alive"
		switch {
		case before.Holder.Unknown:
			why = "forced: the holder was unknown"
		case before.Dead:
			why = "its process is gone"
		case before.Stale:
			why = fmt.Sprintf("not refreshed for %s, TIMEOUT %s", before.Age.Round(time.Millisecond), before.Holder.Timeout)
		}
		fmt.Fprintf(stdout, "%s: broke the lock %s (%s); it is free now\n", before.Path, describeHolder(before.Holder, before.Age), why)
	}
	return 0
}

// breakHolder is a lock whose forced break keeps the lock it reclaimed
// held, until Unlock: a library hook (BreakHold) that this command uses
// where the library has it.
type breakHolder interface {
	BreakHold(force bool) (dlock.Status, error)
}

// waitBrokenHolder waits, while the lock just taken from a live holder is
// held, until that holder has had the time to notice and stop: until its
// process is gone (on this host) or its TIMEOUT has passed, by which time
// its deadline has told it to stop. Released only then, the lock does not
// pass to the next holder while the broken holder's job still runs.
func waitBrokenHolder(before dlock.Status, stdout io.Writer) {
	h := before.Holder
	fmt.Fprintf(stdout, "%s: holding the lock until its broken holder (pid %d on host %s) has stopped, at most its TIMEOUT %s\n", before.Path, h.PID, h.Host, h.Timeout)
	host, _ := os.Hostname()
	// Its process is watched only if it runs here: same host name, and
	// alive now (a pid of another pid namespace would mean nothing).
	local := h.Host != "" && strings.HasPrefix(host, h.Host) && processAlive(h.PID)
	deadline := time.Now().Add(h.Timeout)
	for time.Now().Before(deadline) {
		if local && !processAlive(h.PID) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expandLocks replaces, in paths, each semaphore by its slots and each
// reader/writer lock by its writer lock and its readers' slots (the
// plain locks they are made of), and a flock(1) FILE by the dlock lock
// dlock's flock takes with it (FILE.dlock, DIR/.flock.dlock), so that
// status and break understand every layout dlock makes.
func expandLocks(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, expandLock(p)...)
	}
	return out
}

func expandLock(p string) []string {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return []string{p}
	case !fi.IsDir():
		if lfi, err := os.Stat(p + ".dlock"); err == nil && lfi.IsDir() {
			return expandLock(p + ".dlock")
		}
		return []string{p}
	}
	switch dlockLayout(p) {
	case "semaphore":
		return slotPaths(p)
	case "rw":
		return append([]string{filepath.Join(p, "writer")}, slotPaths(filepath.Join(p, "readers"))...)
	case "":
		if f := filepath.Join(p, ".flock.dlock"); dlockLayout(f) != "" {
			return expandLock(f)
		}
	}
	return []string{p}
}

// slotPaths are the slots of the semaphore at dir, by its size marker.
func slotPaths(dir string) []string {
	names, _ := os.ReadDir(dir)
	n := 0
	for _, e := range names {
		if v, ok := strings.CutPrefix(e.Name(), "size."); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	var out []string
	for i := 0; i < n && i < 4096; i++ {
		out = append(out, filepath.Join(dir, "slot."+strconv.Itoa(i)))
	}
	return out
}
