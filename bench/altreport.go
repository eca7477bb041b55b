package main

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lockdir/dlock"
)

// altRows is the order of the table's rows.
var altRows = []string{implDlock, implDlockPoll, implDlock5, implDlockRun, implFlock,
	"portalocker", "portalocker-tuned", "locket", "filelock", "filelock-tuned",
	"softfilelock", "softfilelock-tuned", "softfilelease", "softfilelease-tuned", "strictsoftfilelock", "strictsoftfilelock-tuned",
	"lockbydir", "lockbydir-tuned", "proper-lockfile", "proper-lockfile-tuned", implFloorChecked, implFloorMkdir, implFloorWatch, implPipe}

// altWhat says what each row is.
var altWhat = map[string]string{
	implDlock:                  "dlock, default options",
	implDlockPoll:              "dlock, watching off (polls every 100 ms, as across hosts)",
	implDlock5:                 "dlock polling every 5 ms (`WithPollInterval`; shared filesystems only): a hand-off as quick as the peers' at 1 ms, for comparing server load",
	implDlockRun:               "`dlock run PATH -- CMD` from a shell: a dlock process per acquisition",
	implFlock:                  "gofrs/flock (flock(2))",
	"portalocker":              "portalocker.Lock (flock; check_interval 0.25 s)",
	"portalocker-tuned":        "portalocker.Lock, check_interval 1 ms",
	"locket":                   "locket.lock_file (blocking flock)",
	"filelock":                 "filelock.FileLock (flock; poll 50 ms)",
	"filelock-tuned":           "filelock.FileLock, poll 1 ms",
	"softfilelock":             "filelock.SoftFileLock (O_EXCL file; poll 50 ms)",
	"softfilelock-tuned":       "filelock.SoftFileLock, poll 1 ms",
	"softfilelease":            "filelock.SoftFileLease (3.2x, 2026: O_EXCL marker with a heartbeat every lease_duration/3, taken once lease_duration stale, on_compromise; lease_duration 30 s; poll 50 ms)",
	"softfilelease-tuned":      "filelock.SoftFileLease, poll 1 ms",
	"strictsoftfilelock":       "filelock.StrictSoftFileLock (3.2x, 2026: ordered claims by hard link, never broken by age; poll up to 50 ms)",
	"strictsoftfilelock-tuned": "filelock.StrictSoftFileLock, poll 1 ms",
	"lockbydir":                "lockbydir algorithm (mkdir; poll 30 ms; TIMEOUT 10 s)",
	"lockbydir-tuned":          "lockbydir algorithm, poll 1 ms",
	"proper-lockfile":          "proper-lockfile (mkdir; stale 10 s; realpath; retry every 100 ms)",
	"proper-lockfile-tuned":    "proper-lockfile, retry every 1 ms, realpath false, onCompromised logs",
	implFloorChecked:           "floor: dlock's system calls alone (statx + rename, twice)",
	implFloorMkdir:             "floor: mkdir + rmdir",
	implFloorWatch:             "floor: rename hand-off with inotify waiters, no checks",
	implPipe:                   "no lock: the pipe to a Python peer, one round trip per Lock and per Unlock (uncontended column: what the pipe adds to every peer's hand-off and acq/s)",
}

func cell(f *fsRun, metric, impl string) string {
	v, ok := f.Metrics[metric][impl]
	if !ok {
		return "–"
	}
	if f.Viol[impl] {
		return fmtNum(v) + "†"
	}
	return fmtNum(v)
}

// maxRoundNotes: the rounds that went wrong told in the notes, per lock
// and row (all of them are in alternatives.json).
const maxRoundNotes = 5

// writeAltMarkdown writes the table of an -alternatives run.
func writeAltMarkdown(name string, r *altReport) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# dlock and the alternatives\n\n")
	p("Written by `%s` on %s (%s).  \n", r.Command, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second))
	p("Machine: %s; load average %s at the start, %s at the end (other jobs ran: speed figures are noisy, compare within a column).  \n", r.Machine, r.LoadStart, r.Load)
	p("Versions: %s.  \n", strings.Join(r.Versions, "; "))
	var ran, not []string
	for _, f := range r.FS {
		ran = append(ran, f.Name)
	}
	for _, name := range altAllFS {
		if !slices.Contains(ran, name) {
			not = append(not, name)
		}
	}
	p("Filesystems: %s", strings.Join(ran, ", "))
	if len(not) > 0 {
		p("; not in this run: %s", strings.Join(not, ", "))
	}
	p(".\n\n")
	p("Rows: plain names are each library with its documented defaults; `-tuned` the same library with its poll interval at 1 ms ")
	p("(and proper-lockfile without realpath, onCompromised logging). Python and Node peers run in their own processes behind a pipe: ")
	p("the `%s` row's uncontended figure is what the pipe adds to each of their hand-offs and acquisitions. Uncontended is one process in a loop inside the library's own language (a `-tuned` row that only shortens the poll shows its default's figure). ", implPipe)
	p("Hand-off: 2 processes (on a shared filesystem one on each mount), the holder holds 1 ms, p50/p99 from the release to the next holder's return. ")
	p("acq/s: 8 processes acquiring as fast as they can. CPU: all processes' CPU per acquisition with %d waiters (local filesystems). ", r.HerdN)
	p("Poll hand-off (shared filesystems): the same 2 processes, but each hold is drawn from %v to %v, long against every poll interval, so a release falls anywhere in the waiter's poll: what a waiter that has waited gets (with the 1 ms hold, the waiter's first look, milliseconds long through a network mount, often finds the lock already free). ", r.WaitHold[0], r.WaitHold[1])
	p("Server ops (shared filesystems): on sshfs the system calls of the sftp server that touch the filesystem (strace -c -f of its sessions; each lookup of a path component through the mount is one), on GlusterFS the bricks' own count of the file operations they served (`gluster volume profile`, without FORGET and RELEASE); per uncontended acquire+release (in one process on one mount, the lock already made), and per second of one waiter blocked on a lock held through the other mount. ")
	p("Counter: %d processes (split across the mounts) × %d increments of a counter on local disk, counting lost updates and the times two were inside at once (an O_EXCL marker on local disk), out of the increments done. ", r.CntProcs, r.CntIts)
	p("Stale race: a holder is paused (SIGSTOP) past the stale time (%v for all that have one; proper-lockfile's least) while two waiters, one on each mount, reclaim; bad = rounds in which both held at once, out of the rounds run (%d at once, each with a lock and processes of its own; a round that failed is in the notes). ", r.Stale, r.Parallel)
	p("Late release: the paused holder's lock is taken over, then it wakes and releases; bad = rounds in which a third process could then acquire while the successor held. ")
	p("In both, every process of a round is started before the holder acquires, and a round that went wrong asks the holder that was overtaken whether its library had told it, before the other process got in, that its own deadline had passed (the load starved it and it gave the lock up): `(+N told first)` counts those rounds, which are legitimate and not in bad (told that its lock was removed or taken is a deletion it learnt of, and bad); the notes tell each round that went wrong, which kind it was, and its timeline (CLOCK_MONOTONIC, one clock for every process, ms from the round's start). ")
	if slices.ContainsFunc(r.FS, func(f *fsRun) bool { return strings.HasPrefix(f.Name, "nfs-") }) {
		p("NFS (`nfs-default`: the kernel's default mount options; `nfs-actimeo0`: `actimeo=0`): two qemu guests of `scripts/qemu-nfs.sh`, each a Linux NFS client with its own kernel, of one nfs-ganesha export on this host, mounting it with each set of options (one boot for both tables); only the Go locks and the floors run there (the guests carry no Python or Node). ")
		p("Uncontended: one process in guest 1, timed by the guest's clock. Hand-offs: a holder in one guest, the waiter in the other, the roles alternating; timed on this host's clock, from the holder's agent passing `unlock` to its process to the waiter's acquisition arriving here (both lines cross the same kind of link; the notes give its round trip). ")
		p("Server ops on NFS: the RPCs the guests' NFS clients sent for the mount (their `/proc/self/mountstats`), each a round trip to the server; per acquire+release counted over the uncontended batches, per waiting second both guests' (the waiter's looks, the holder's refreshes). ")
		p("The counter, the stale race and the late release drive the locks in the guests from this host: the counter's increments and the O_EXCL marker are this host's, between the guest's Lock and Unlock answers. ")
	}
	p("n/a: the peer cannot express the case (it never reclaims a paused holder's lock, or does not exclude across the mounts to begin with: another process got in at once, or the counter lost updates). †: some trial of this lock on this filesystem found two holders at once, so its speed figures are of a lock that did not exclude. Locks are the libraries' own; nothing is changed in them.\n\n")
	for _, f := range r.FS {
		p("## %s\n\n", f.Name)
		if len(f.Metrics) == 0 && len(f.Checks) == 0 {
			p("%s\n\n", strings.Join(f.Notes, "; "))
			continue
		}
		cpu := fmt.Sprintf("CPU ms/acq, %d waiting", r.HerdN)
		cols := []string{"impl", "uncontended µs", "hand-off p50 ms", "p99 ms", "acq/s, 8"}
		if !f.Shared {
			cols = append(cols, cpu)
		} else {
			cols = append(cols, "poll hand-off p50 ms", "p99 ms", "server ops/acq", "server ops/s waiting")
		}
		cols = append(cols, "counter", "stale race: two held", "late release: successor deleted")
		p("| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		for _, impl := range altRows {
			row := []string{"`" + impl + "`", cell(f, "unc_us", impl), cell(f, "p50_ms", impl), cell(f, "p99_ms", impl), cell(f, "acq8", impl)}
			if !f.Shared {
				row = append(row, cell(f, "cpu_ms", impl))
			} else {
				row = append(row, cell(f, "wait_p50_ms", impl), cell(f, "wait_p99_ms", impl), cell(f, "ops_acq", impl), cell(f, "ops_wait_s", impl))
			}
			any := false
			for _, c := range []string{"counter", "stale", "late"} {
				v, ok := f.Checks[c][impl]
				s := "–"
				if ok {
					s = v.String()
					if v.bad() {
						s = "**" + s + "**"
					}
				}
				row = append(row, s)
			}
			for _, x := range row[1:] {
				any = any || x != "–"
			}
			if any {
				p("| %s |\n", strings.Join(row, " | "))
			}
		}
		p("\n")
		if rs := altRatios(f); len(rs) > 0 {
			p("Ratios in this run (dlock's figure ÷ the other's, the same filesystem; what the README's Performance section states as ranges):\n\n")
			for _, r := range rs {
				p("- %s\n", r)
			}
			p("\n")
		}
		for _, t := range altTargets(f) {
			p("- %s %s\n", t.verdict, t.text)
		}
		p("\n")
		var notes []string
		for _, c := range []string{"counter", "stale", "late"} {
			for _, impl := range altRows {
				v, ok := f.Checks[c][impl]
				if ok && (v.Note != "" || v.NA != "") {
					notes = append(notes, fmt.Sprintf("%s `%s`: %s", c, impl, strings.Trim(v.NA+"; "+v.Note, "; ")))
				}
				for i, r := range v.Rounds {
					if i == maxRoundNotes {
						notes = append(notes, fmt.Sprintf("%s `%s`: %d more such rounds in alternatives.json", c, impl, len(v.Rounds)-i))
						break
					}
					notes = append(notes, fmt.Sprintf("%s `%s` %s", c, impl, r))
				}
			}
		}
		notes = append(notes, f.Notes...)
		if len(notes) > 0 {
			p("<details><summary>notes (%d)</summary>\n\n", len(notes))
			for _, n := range notes {
				// Paths of this machine say nothing to a reader: name the mount.
				for i, d := range f.Dirs {
					n = strings.ReplaceAll(n, d, fmt.Sprintf("MOUNT%d", i+1))
				}
				p("- %s\n", strings.ReplaceAll(n, "\n", " "))
			}
			p("\n</details>\n\n")
		}
	}
	p("## The rows\n\n| impl | what |\n|---|---|\n")
	for _, impl := range altRows {
		p("| `%s` | %s |\n", impl, altWhat[impl])
	}
	return os.WriteFile(name, []byte(b.String()), 0o644)
}

// writeAltSVG draws, per filesystem, each lock's uncontended acquire +
// release and its hand-off p50, on one log time axis; a lock that failed a
// correctness check on that filesystem is marked.
func writeAltSVG(name string, r *altReport) error {
	impls := append(slices.Clone(altTuned), implFloorChecked, implFloorMkdir, implFloorWatch)
	impls = slices.Insert(impls, 1, implDlock5)
	const left, right, top, rowH, width = 300, 30, 70, 21, 920
	plotW := float64(width - left - right)
	lo, hi := 1.0, 1e7 // µs
	x := func(us float64) float64 {
		us = math.Max(us, lo)
		return left + plotW*(math.Log10(us)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	type row struct {
		label          string
		unc, p50, wait float64
		bad            bool
	}
	type panel struct {
		title string
		rows  []row
	}
	var panels []panel
	for _, f := range r.FS {
		pn := panel{title: f.Name}
		for _, impl := range impls {
			u, okU := f.Metrics["unc_us"][impl]
			h, okH := f.Metrics["p50_ms"][impl]
			w, okW := f.Metrics["wait_p50_ms"][impl]
			if !okU && !okH && !okW {
				continue
			}
			bad := false
			for _, c := range f.Checks {
				if v, ok := c[impl]; ok && v.bad() {
					bad = true
				}
			}
			pn.rows = append(pn.rows, row{impl, u, h * 1e3, w * 1e3, bad})
		}
		if len(pn.rows) > 0 {
			panels = append(panels, pn)
		}
	}
	height := top + 46
	for _, pn := range panels {
		height += 26 + rowH*len(pn.rows)
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="10" y="20" font-size="15" font-weight="bold">dlock and the alternatives: time per uncontended acquire+release and per hand-off (p50), log scale</text>` + "\n")
	p(`<text x="10" y="37" fill="#555">%s — %s; load %s → %s</text>`+"\n", html.EscapeString(r.Started.UTC().Format("2006-01-02 15:04 MST")), html.EscapeString(r.Machine), r.LoadStart, r.Load)
	p(`<rect x="10" y="46" width="12" height="9" fill="#1f77b4"/><text x="26" y="55">uncontended</text>`)
	p(`<rect x="110" y="46" width="12" height="9" fill="#ff7f0e"/><text x="126" y="55">hand-off p50, 1 ms holds</text>`)
	p(`<rect x="270" y="46" width="12" height="9" fill="#2ca02c"/><text x="286" y="55">poll hand-off p50, 50-250 ms holds (shared: across the two mounts)</text>`)
	p(`<text x="10" y="68" fill="#d62728">✗ = lost updates, two holders, or a deleted successor on that filesystem</text>` + "\n")
	y := top + 6
	grid := func(y0, y1 int) {
		for v := lo; v <= hi; v *= 10 {
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e3e3e3"/>`+"\n", x(v), y0, x(v), y1)
		}
	}
	for _, pn := range panels {
		p(`<text x="10" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", y+14, html.EscapeString(pn.title))
		y0 := y + 20
		grid(y0, y0+rowH*len(pn.rows))
		for i, rw := range pn.rows {
			yy := y0 + i*rowH
			lbl := html.EscapeString(rw.label)
			if rw.bad {
				lbl += ` <tspan fill="#d62728">✗</tspan>`
			}
			p(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-6, yy+14, lbl)
			for i, b := range []struct {
				v          float64
				fill, text string
			}{{rw.unc, "#1f77b4", "#1f77b4"}, {rw.p50, "#ff7f0e", "#c25e00"}, {rw.wait, "#2ca02c", "#1e7b1e"}} {
				if b.v > 0 {
					p(`<rect x="%d" y="%d" width="%.1f" height="5" fill="%s"/>`+"\n", left, yy+2+6*i, x(b.v)-left, b.fill)
					p(`<text x="%.1f" y="%d" font-size="8" fill="%s">%s</text>`+"\n", x(b.v)+2, yy+7+6*i, b.text, fmtDur(b.v))
				}
			}
		}
		y = y0 + rowH*len(pn.rows) + 6
	}
	for v := lo; v <= hi; v *= 10 {
		p(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", x(v), y+12, fmtDur(v))
	}
	p(`<text x="10" y="%d" fill="#555">%s (docs/alternatives.md has every row and the counts)</text>`+"\n", y+30, html.EscapeString(r.Command))
	b.WriteString("</svg>\n")
	return os.WriteFile(name, []byte(b.String()), 0o644)
}

// altRatios are dlock's figures on one filesystem divided by its floors'
// and its nearest peers' of the same run: the ratios that the README
// states, so that it can state them without figures of its own.
func altRatios(f *fsRun) []string {
	var out []string
	line := func(what, metric, of string, others ...string) {
		d, ok := f.Metrics[metric][of]
		if !ok || d <= 0 {
			return
		}
		var parts []string
		for _, o := range others {
			v, ok := f.Metrics[metric][o]
			if !ok || v <= 0 {
				continue
			}
			mark := ""
			if f.Viol[o] {
				mark = "†"
			}
			parts = append(parts, fmt.Sprintf("%s× `%s`%s", fmtRatio(d/v), o, mark))
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("%s: `%s` %s", what, of, strings.Join(parts, ", ")))
		}
	}
	line("uncontended Lock+Unlock (below 1: dlock quicker)", "unc_us", implDlock, implFloorChecked, implFloorMkdir, implFlock, "lockbydir", "locket")
	line("hand-off p50, 1 ms holds (below 1: dlock quicker)", "p50_ms", implDlock, implFloorWatch, implFlock, "locket", "lockbydir-tuned")
	line("hand-off p99, 1 ms holds", "p99_ms", implDlock, implFloorWatch, implFlock, "locket", "lockbydir-tuned")
	line("acquisitions/s with 8 processes (above 1: dlock more)", "acq8", implDlock, implFlock, "locket", "lockbydir-tuned")
	line("CPU per acquisition with waiters (below 1: dlock less)", "cpu_ms", implDlock, implFlock, "locket", "lockbydir-tuned")
	if w, ok := f.Metrics["wait_p50_ms"][implDlock]; ok {
		out = append(out, fmt.Sprintf("poll hand-off p50 across the mounts: `dlock` %s× its poll interval (%v)", fmtRatio(w/float64(dlock.DefaultPollInterval.Milliseconds())), dlock.DefaultPollInterval))
	}
	line("server operations per acquire+release", "ops_acq", implDlock, "lockbydir", "proper-lockfile", implFloorChecked, implFloorMkdir, implFlock)
	line("server operations per waiting second", "ops_wait_s", implDlock, "lockbydir", "proper-lockfile")
	return out
}

// fmtRatio writes a ratio with two decimals below 10.
func fmtRatio(r float64) string {
	if r >= 10 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

// fmtDur writes microseconds as µs, ms or s.
func fmtDur(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%gs", round3(us/1e6))
	case us >= 1e3:
		return fmt.Sprintf("%gms", round3(us/1e3))
	}
	return fmt.Sprintf("%gµs", round3(us))
}

// readAltReport reads the alternatives.json of a run.
func readAltReport(name string) (*altReport, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	r := new(altReport)
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// writeAlternatives writes alternatives.md, .svg and (with rsvg-convert)
// .png into dir.
func writeAlternatives(dir string, r *altReport) error {
	// The run's figures, so that the table and chart can be written again
	// from them (-from) without measuring again.
	js, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "alternatives.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeAltMarkdown(filepath.Join(dir, "alternatives.md"), r); err != nil {
		return err
	}
	svg := filepath.Join(dir, "alternatives.svg")
	if err := writeAltSVG(svg, r); err != nil {
		return err
	}
	if _, err := exec.LookPath("rsvg-convert"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: no rsvg-convert (librsvg2-bin): alternatives.png not written")
		return nil
	}
	out, err := exec.Command("rsvg-convert", "-o", filepath.Join(dir, "alternatives.png"), svg).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rsvg-convert: %v: %s", err, out)
	}
	return nil
}

// lockPeers are the lock-file libraries of the table (not dlock, floors
// or the pipe).
func lockPeers() []string {
	var out []string
	for _, impl := range altRows {
		if isForeign(impl) && impl != implPipe {
			out = append(out, impl)
		}
	}
	return out
}

// altNoise: a load-for-latency figure counts as more than another's only
// beyond this factor (the p50 of 25 to 40 hand-offs moves that much from
// run to run).
const altNoise = 1.1

// altTargets judges dlock on one filesystem against the floors measured
// in the same run and against the peers.
func altTargets(f *fsRun) []target {
	var out []target
	add := func(ok, have bool, text string) {
		v := "MISS"
		switch {
		case !have:
			v = "n/a "
		case ok:
			v = "met "
		}
		out = append(out, target{"**" + strings.TrimSpace(v) + "**", text})
	}
	m := func(metric, impl string) (float64, bool) { v, ok := f.Metrics[metric][impl]; return v, ok }
	d, okD := m("unc_us", implDlock)
	c, okC := m("unc_us", implFloorChecked)
	add(d <= 2*c, okD && okC, fmt.Sprintf("uncontended: dlock ≤ 2× floor-checked (%s vs %s µs)", fmtNum(d), fmtNum(c)))
	if f.Shared {
		// Issue 26's targets for network filesystems.
		if mk, ok := m("unc_us", implFloorMkdir); ok && okD {
			add(d <= 1.5*mk, true, fmt.Sprintf("network filesystem, uncontended: dlock ≤ 1.5× floor-mkdir (%s vs %s µs: %s×)", fmtNum(d), fmtNum(mk), fmtRatio(d/mk)))
		}
		if od, ok := m("ops_acq", implDlock); ok {
			var more []string
			have := false
			for _, o := range []string{implFloorMkdir, "lockbydir", "proper-lockfile"} {
				if v, ok := m("ops_acq", o); ok && !f.Viol[o] {
					have = true
					if od > v {
						more = append(more, fmt.Sprintf("%s %s", o, fmtNum(v)))
					}
				}
			}
			text := fmt.Sprintf("network filesystem, server operations per acquire+release: dlock (%s) no more than the mkdir-style locks'", fmtNum(od))
			if len(more) > 0 {
				text += "; more than: " + strings.Join(more, ", ")
			}
			add(len(more) == 0, have, text)
		}
	}
	// beaten lists the peers whose metric is better than dlock's.
	beaten := func(metric string, higher bool) (list []string, have bool) {
		d, ok := m(metric, implDlock)
		if !ok {
			return nil, false
		}
		for _, impl := range lockPeers() {
			if f.Viol[impl] {
				continue // its figures are of a lock that did not exclude
			}
			v, ok := m(metric, impl)
			have = have || ok
			if base, tuned := strings.CutSuffix(impl, "-tuned"); tuned && metric == "unc_us" {
				if bv, okB := m(metric, base); okB && bv == v {
					continue // the same lock, its default's figure (listed already)
				}
			}
			if ok && ((higher && v > d) || (!higher && v < d)) {
				list = append(list, fmt.Sprintf("%s %s", impl, fmtNum(v)))
			}
		}
		// No peer measured here (NFS: only the Go locks run in the
		// guests): nothing to be ahead of.
		return list, have
	}
	for _, x := range []struct {
		metric, what string
		higher       bool
	}{
		{"unc_us", "uncontended µs", false}, {"p50_ms", "hand-off p50 ms", false},
		{"acq8", "acq/s with 8", true}, {"cpu_ms", "CPU ms per acquisition", false},
		{"ops_wait_s", "server operations per waiting second", false},
	} {
		list, have := beaten(x.metric, x.higher)
		if !have {
			continue
		}
		d, _ := m(x.metric, implDlock)
		text := fmt.Sprintf("%s: dlock (%s) ahead of every lock-file peer that excluded", x.what, fmtNum(d))
		if len(list) > 0 {
			text += "; not of: " + strings.Join(list, ", ")
		}
		add(len(list) == 0, have, text)
	}
	// Across the mounts of a shared filesystem a waiter learns of a
	// release only by polling: released at a random moment, a jittered
	// poll (75 to 100 % of the interval) finds it after about 44 % of the
	// interval on average, plus the round trips of the release and the
	// acquisition.
	if w, ok := m("wait_p50_ms", implDlock); ok {
		limit := 0.6 * float64(dlock.DefaultPollInterval.Milliseconds())
		add(w <= limit, true, fmt.Sprintf("poll hand-off: dlock's p50 (%s ms) well inside its %v poll interval (≤ %s ms)", fmtNum(w), dlock.DefaultPollInterval, fmtNum(limit)))
	}
	// On a shared filesystem a waiter polls, and a shorter poll buys a
	// quicker hand-off with more load on the server: compare what each
	// pays for its latency, ops per waiting second × poll hand-off p50 (in
	// seconds; about the operations of half a poll, whatever the interval).
	cost := func(impl string) (float64, bool) {
		o, ok1 := m("ops_wait_s", impl)
		h, ok2 := m("wait_p50_ms", impl)
		return o * h / 1e3, ok1 && ok2
	}
	for _, dl := range []string{implDlock, implDlock5} {
		d, ok := cost(dl)
		if !ok {
			continue
		}
		var list []string
		peers := false
		for _, impl := range lockPeers() {
			if f.Viol[impl] {
				continue
			}
			v, ok := cost(impl)
			peers = peers || ok
			if ok && v*altNoise < d {
				list = append(list, fmt.Sprintf("%s %s", impl, fmtNum(round3(v))))
			}
		}
		text := fmt.Sprintf("server load for the hand-off: %s's ops per waiting second × poll hand-off p50 (%s ops/s × %s ms = %s) no more than any lock-file peer's that excluded (within %.0f%%, the noise of a few dozen hand-offs)",
			dl, fmtNum(f.Metrics["ops_wait_s"][dl]), fmtNum(f.Metrics["wait_p50_ms"][dl]), fmtNum(round3(d)), (altNoise-1)*100)
		if len(list) > 0 {
			text += "; more than: " + strings.Join(list, ", ")
		}
		add(len(list) == 0, peers, text)
	}
	bad := []string{}
	told := []string{}
	have := false
	for _, c := range []string{"counter", "stale", "late"} {
		for _, impl := range []string{implDlock, implDlockRun} {
			if v, ok := f.Checks[c][impl]; ok {
				have = true
				if v.bad() {
					bad = append(bad, fmt.Sprintf("%s %s %s", impl, c, v))
				} else if v.Told > 0 {
					told = append(told, fmt.Sprintf("%s %s %d", impl, c, v.Told))
				}
			}
		}
	}
	text := "correctness: dlock and dlock-run 0 lost, 0 both in, 0 double holds, 0 deleted successors"
	if len(bad) > 0 {
		text += "; not: " + strings.Join(bad, ", ")
	}
	if len(told) > 0 {
		text += "; rounds in which the holder overtaken had been told it lost the lock first (its deadline passed under load): " + strings.Join(told, ", ")
	}
	add(len(bad) == 0, have, text)
	return out
}
