package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// state is what a worker is doing, as the timeline shows it.
type state int

const (
	idle    state = iota // between critical sections
	waiting              // for the lock
	holding              // in a critical section, holding the lock
	overlap              // in a critical section while another worker is in one (timeline only)
	stale                // continued after its lock was reclaimed
	stopped              // SIGSTOPped while holding
	killed               // SIGKILLed while holding
	done                 // finished its rounds (or exited)
)

var stateNames = [...]string{"idle", "waiting", "holding", "overlap", "stale", "stopped", "killed", "done"}

func (s state) String() string { return stateNames[s] }

// segment is a time span in one state; to is zero while it lasts.
type segment struct {
	s        state
	from, to time.Time
}

// mark is a moment worth a symbol on the timeline.
type mark struct {
	t    time.Time
	what string // reclaimed, fenced, lost
}

// section is one critical section.
type section struct {
	w          int
	fence      uint64
	waitT      time.Time // when the worker began to wait for it
	enter, end time.Time // end is zero if it never ended
	normal     bool      // ended by the worker leaving it
	committed  bool
	fenced     bool // its write was refused: the lock had been reclaimed
	killed     bool
	stopped    bool
}

type workerView struct {
	cmd      *os.Process
	state    state
	segs     []segment
	marks    []mark
	cur      *section
	waitT    time.Time
	round    int
	sections int
	note     string
}

type reclaim struct {
	from, by int
	how      string // killed, stopped
	after    time.Duration
}

type demo struct {
	cfg                    config
	dir                    string
	out                    io.Writer
	errOut                 io.Writer
	cols                   func() int // the terminal's width
	t0                     time.Time
	w                      []*workerView
	sections               []*section
	killVictim, stopVictim int
	firstFence             uint64

	// A holder killed or stopped while holding, not yet reclaimed.
	pending    *section
	pendingT   time.Time
	stoppedNow bool
	contTimer  <-chan time.Time
	reclaims   []reclaim
	losses     []int
	errors     int
	drawn      int // lines drawn by the last render

	// The run's progress: sections entered, scenes cued and done.
	entered            int
	killCue, stopCue   bool
	killDone, stopDone bool
	ended              bool
	sceneTimer         <-chan time.Time
}

func newDemo(cfg config, dir string, out io.Writer, errOut io.Writer) *demo {
	d := &demo{cfg: cfg, dir: dir, out: out, errOut: errOut, killVictim: -1, stopVictim: -1,
		cols: func() int { return 80 }}
	for range cfg.workers {
		d.w = append(d.w, &workerView{})
	}
	return d
}

func (d *demo) header() {
	mode := "compete for the lock"
	if d.cfg.nolock {
		mode = "run WITHOUT the lock"
	}
	fmt.Fprintf(d.out, "dlockdemo: %d workers %s (TIMEOUT %s, %d critical sections)\n  in %s\n", d.cfg.workers, mode, d.cfg.timeout, d.cfg.workers*d.cfg.rounds, d.dir)
	if d.killVictim >= 0 {
		fmt.Fprintf(d.out, "  w%d will be killed (SIGKILL) holding the lock: reclaimed at once\n", d.killVictim)
	}
	if d.stopVictim >= 0 {
		fmt.Fprintf(d.out, "  w%d will stop (SIGSTOP) holding the lock: reclaimed after TIMEOUT\n", d.stopVictim)
	}
	if d.cfg.plain && !d.cfg.verbose {
		fmt.Fprintln(d.out, "  what happens (-v: every critical section):")
	}
}

// setState moves worker w to state s at t.
func (d *demo) setState(w int, s state, t time.Time) {
	v := d.w[w]
	if n := len(v.segs); n > 0 && v.segs[n-1].to.IsZero() {
		if v.segs[n-1].s == s {
			return
		}
		v.segs[n-1].to = t
	}
	v.state = s
	v.segs = append(v.segs, segment{s: s, from: t})
}

// story prints a plain line (without a terminal) of what the demo shows:
// the start, the kill, the stop, the reclaims, the refused write.
func (d *demo) story(t time.Time, w int, format string, args ...any) {
	if d.cfg.plain {
		fmt.Fprintf(d.out, "%7.3fs  w%d  %s\n", t.Sub(d.t0).Seconds(), w, fmt.Sprintf(format, args...))
	}
}

// detail prints a plain line of the routine, only with -v.
func (d *demo) detail(t time.Time, w int, format string, args ...any) {
	if d.cfg.verbose {
		d.story(t, w, format, args...)
	}
}

// fenceNo shows a fence as a small number: the first one seen is #1.
func (d *demo) fenceNo(f uint64) string {
	if f == 0 {
		return "-"
	}
	if d.firstFence == 0 || f < d.firstFence {
		d.firstFence = f
	}
	return "#" + strconv.FormatUint(f-d.firstFence+1, 10)
}

// handle takes in one event of a worker.
func (d *demo) handle(ev event) {
	v := d.w[ev.w]
	switch ev.kind {
	case "wait":
		v.round, _ = strconv.Atoi(ev.arg)
		v.waitT = ev.t
		if !d.cfg.nolock { // without a lock there is nothing to wait for
			d.setState(ev.w, waiting, ev.t)
		}
	case "enter":
		d.onEnter(ev, v)
	case "killme":
		d.onKillme(ev, v)
	case "stop":
		d.onStop(ev, v)
	case "resume":
		s := holding
		if d.pending == nil || d.pending.w != ev.w {
			s = stale
			v.note = "continued, lock reclaimed"
		}
		d.setState(ev.w, s, ev.t)
		d.story(ev.t, ev.w, "continued (SIGCONT), still inside its critical section")
	case "commit":
		d.onCommit(ev, v)
	case "fenced":
		if v.cur != nil {
			v.cur.fenced = true
		}
		v.marks = append(v.marks, mark{ev.t, "fenced"})
		v.note = "late write refused: fence"
		last, _ := strconv.ParseUint(ev.arg, 10, 64)
		d.story(ev.t, ev.w, "FENCED    its write refused: the counter was written with fence %s after its %s", d.fenceNo(last), d.fenceNo(v.cur.fence))
	case "exit":
		d.onExit(ev, v)
	case "lost":
		d.losses = append(d.losses, ev.w)
		v.marks = append(v.marks, mark{ev.t, "lost"})
		v.note = "Unlock: ErrLost"
		d.story(ev.t, ev.w, "LOST      Unlock: %s", "lock was lost (ErrLost)")
	case "error":
		d.errors++
		fmt.Fprintf(d.errOut, "dlockdemo: w%d: %s\n", ev.w, ev.arg)
	case "done":
		d.setState(ev.w, done, ev.t)
		d.detail(ev.t, ev.w, "done      %d critical sections", v.sections)
	case "eof":
		d.onEOF(ev, v)
	}
}

// onEnter: a worker entered its critical section (with the lock, unless
// -nolock), perhaps reclaiming the lock from a killed or stopped holder.
func (d *demo) onEnter(ev event, v *workerView) {
	fence, _ := strconv.ParseUint(ev.arg, 10, 64)
	sec := &section{w: ev.w, fence: fence, waitT: v.waitT, enter: ev.t}
	d.sections = append(d.sections, sec)
	v.cur = sec
	v.sections++
	d.setState(ev.w, holding, ev.t)
	d.entered++
	d.progress()
	first := d.entered == 1
	note := d.reclaimedBy(ev, v)
	switch {
	case note != "":
		d.story(ev.t, ev.w, "holding   fence %s, round %d%s", d.fenceNo(fence), v.round+1, note)
	case first && d.cfg.nolock:
		d.story(ev.t, ev.w, "inside    its critical section, without the lock")
	case first:
		d.story(ev.t, ev.w, "holding   fence %s = %d (fences start from the lock's creation time in ns)", d.fenceNo(fence), fence)
	case d.cfg.nolock:
		d.detail(ev.t, ev.w, "inside    round %d", v.round+1)
	default:
		d.detail(ev.t, ev.w, "holding   fence %s, round %d", d.fenceNo(fence), v.round+1)
	}
}

// reclaimedBy notes the reclaim when the worker of ev took the lock from
// a killed or stopped holder, and returns what the story says of it ("":
// no reclaim).
func (d *demo) reclaimedBy(ev event, v *workerView) string {
	p := d.pending
	if p == nil || p.w == ev.w {
		return ""
	}
	how := "killed"
	if p.stopped {
		how = "stopped"
	}
	r := reclaim{from: p.w, by: ev.w, how: how, after: ev.t.Sub(d.pendingT)}
	d.reclaims = append(d.reclaims, r)
	d.pending = nil
	if how == "killed" {
		d.killDone = true
		d.progress()
	}
	v.marks = append(v.marks, mark{ev.t, "reclaimed"})
	v.note = fmt.Sprintf("reclaimed from w%d", p.w)
	return fmt.Sprintf(": RECLAIMED from w%d (%s %s ago)", p.w, how, fmtDur(r.after))
}

// onKillme: the kill victim holds the lock; kill it with SIGKILL.
func (d *demo) onKillme(ev event, v *workerView) {
	t := time.Now() // before the kill: the section cannot outlast it
	if v.cur != nil {
		v.cur.end, v.cur.killed = t, true
		d.pending, d.pendingT = v.cur, t
	}
	v.cmd.Kill()
	d.setState(ev.w, killed, t)
	v.note = "SIGKILL while holding"
	fence := "-"
	if v.cur != nil {
		fence = d.fenceNo(v.cur.fence)
	}
	d.story(t, ev.w, "KILLED    with SIGKILL while holding the lock (fence %s)", fence)
}

// onStop: the stop victim stopped itself while holding the lock.
func (d *demo) onStop(ev event, v *workerView) {
	if v.cur != nil {
		v.cur.stopped = true
		v.cur.end = ev.t // if its write is fenced, this is where its effect ended
		d.pending, d.pendingT = v.cur, ev.t
	}
	d.stoppedNow = true
	d.contTimer = time.After(3*d.cfg.timeout + 2*time.Second)
	d.setState(ev.w, stopped, ev.t)
	v.note = "SIGSTOP while holding"
	fence := "-"
	if v.cur != nil {
		fence = d.fenceNo(v.cur.fence)
	}
	d.story(ev.t, ev.w, "STOPPED   (SIGSTOP) while holding the lock (fence %s); its TIMEOUT is %s", fence, d.cfg.timeout)
}

// onCommit: a worker wrote the counter.
func (d *demo) onCommit(ev event, v *workerView) {
	if v.cur == nil {
		return
	}
	v.cur.committed = true
	// A stopped holder is continued once a later holder has written.
	if d.stoppedNow && ev.w != d.stopVictim && d.w[d.stopVictim].cur != nil && v.cur.fence > d.w[d.stopVictim].cur.fence {
		d.resumeStopped(fmt.Sprintf("w%d wrote the counter with a later fence", ev.w))
	}
}

// onExit: a worker left its critical section.
func (d *demo) onExit(ev event, v *workerView) {
	if sec := v.cur; sec != nil && !sec.killed && !(sec.stopped && sec.fenced) {
		sec.end, sec.normal = ev.t, true
	}
	if sec := v.cur; sec != nil && sec.stopped {
		d.stopDone = true
		defer d.progress()
	}
	d.setState(ev.w, idle, ev.t)
}

// onEOF: a worker's output ended: it exited (or was killed).
func (d *demo) onEOF(ev event, v *workerView) {
	if v.state != killed {
		if ev.code != 0 {
			d.errors++
			fmt.Fprintf(d.errOut, "dlockdemo: w%d exited with status %d\n", ev.w, ev.code)
		}
		d.setState(ev.w, done, ev.t)
	}
}

// progress cues the scenes when a third and a half of the sections are
// done, and ends the run once all are done and the scenes played.
func (d *demo) progress() {
	target := d.cfg.workers * d.cfg.rounds
	cue := func(name string) {
		if err := os.WriteFile(filepath.Join(d.dir, name), nil, 0o644); err != nil {
			fmt.Fprintf(d.errOut, "dlockdemo: %v\n", err)
		}
	}
	if d.killVictim >= 0 && !d.killCue && d.entered >= target/3 {
		d.killCue = true
		cue("kill-now")
	}
	if d.stopVictim >= 0 && !d.stopCue && d.entered >= target/2 {
		d.stopCue = true
		cue("stop-now")
	}
	if d.entered < target || d.ended {
		return
	}
	if (d.killVictim < 0 || d.killDone) && (d.stopVictim < 0 || d.stopDone) {
		d.finish("")
	} else if d.sceneTimer == nil {
		d.sceneTimer = time.After(3*d.cfg.timeout + 10*time.Second)
	}
}

// finish tells the workers to end after their current round.
func (d *demo) finish(why string) {
	if d.ended {
		return
	}
	d.ended = true
	if why != "" {
		d.errors++
		fmt.Fprintf(d.errOut, "dlockdemo: ending: %s\n", why)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "end"), nil, 0o644); err != nil {
		fmt.Fprintf(d.errOut, "dlockdemo: %v\n", err)
	}
}

// resumeStopped continues the stopped worker.
func (d *demo) resumeStopped(why string) {
	if !d.stoppedNow {
		return
	}
	d.stoppedNow, d.contTimer = false, nil
	v := d.w[d.stopVictim]
	if err := resume(v.cmd); err != nil {
		fmt.Fprintf(d.errOut, "dlockdemo: continuing w%d: %v\n", d.stopVictim, err)
	}
	d.story(time.Now(), d.stopVictim, "SIGCONT   sent (%s)", why)
}

func (d *demo) killAll() {
	for _, v := range d.w {
		if v.cmd != nil {
			v.cmd.Kill()
		}
	}
}

// Timeline glyphs and their terminal colours.
var glyph = map[state]string{idle: " ", waiting: ".", holding: "#", overlap: "&", stale: "!", stopped: "Z", killed: "X", done: " "}
var colour = map[state]string{waiting: "\x1b[2m", holding: "\x1b[32m", overlap: "\x1b[1;41;37m", stale: "\x1b[35m", stopped: "\x1b[33m", killed: "\x1b[31m"}

// rank orders states for a timeline cell that spans several.
var rank = map[state]int{done: 0, idle: 1, waiting: 2, holding: 3, overlap: 4, stale: 5, stopped: 6, killed: 7}

// legendOrder is the order of the legends, which list only what the
// picture shows.
var legendOrder = []state{holding, overlap, waiting, stopped, killed, stale}

// legendText says what a state means, in the terminal's legend and the SVG's.
func (d *demo) legendText(s state) string {
	switch s {
	case holding:
		if d.cfg.nolock {
			return "in its critical section"
		}
		return "holding the lock"
	case overlap:
		return "OVERLAP: another worker is inside too"
	case waiting:
		return "waiting"
	case stopped:
		return "stopped"
	case killed:
		return "killed"
	case stale:
		return "running after its lock was reclaimed"
	}
	return s.String()
}

// span is a stretch of time.
type span struct{ from, to time.Time }

// cells renders worker v's history from t0 to now in n cells, with its
// overlaps (ovl, see overlapSpans) over its critical sections.
func (d *demo) cells(v *workerView, ovl []span, now time.Time, n int, total time.Duration) []state {
	out := make([]state, n)
	for i := range out {
		out[i] = done
	}
	cell := total / time.Duration(n)
	paint := func(s state, from, to time.Time) {
		a := int(from.Sub(d.t0) / cell)
		b := int(to.Sub(d.t0) / cell)
		if s == killed {
			b = a // a single X where it died
		}
		for i := max(a, 0); i <= b && i < n; i++ {
			if rank[s] > rank[out[i]] {
				out[i] = s
			}
		}
	}
	for _, s := range v.segs {
		to := s.to
		if to.IsZero() {
			to = now
		}
		paint(s.s, s.from, to)
	}
	for _, o := range ovl {
		paint(overlap, o.from, o.to)
	}
	return out
}

// render redraws the timeline on the terminal: live, or (final) the whole
// run, from its start to its end, the time the summary gives. Every line
// is kept narrower than the terminal, so that none wraps and the redraw
// stays in place.
func (d *demo) render(now time.Time, final bool) {
	cols := d.cols()
	width := min(60, max(cols-52, 10)) // timeline cells
	elapsed := now.Sub(d.t0)
	// Live, the axis grows by whole seconds; at the end it is the run.
	axis := max(time.Duration(math.Ceil(elapsed.Seconds()))*time.Second, 5*time.Second)
	title := "timeline (live)"
	if final {
		axis, title = max(elapsed, time.Millisecond), "timeline of the whole run"
	}
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn)
	}
	lines := 0
	// line writes prefix (of visible width pw) and the text after it, cut
	// to fit the terminal.
	line := func(prefix string, pw int, text string) {
		if r := []rune(text); pw+len(r) > cols-1 {
			text = string(r[:max(cols-1-pw, 0)])
		}
		b.WriteString("\r\x1b[2K" + prefix + text + "\n")
		lines++
	}
	line("", 0, fmt.Sprintf("        %-*s  %s", width, title, fmtDur(elapsed)))
	ovl := d.overlapSpans(now)
	seen := map[state]bool{}
	for i, v := range d.w {
		row := fmt.Sprintf("  w%-3d|", i)
		for _, s := range d.cells(v, ovl[i], now, width, axis) {
			seen[s] = true
			if c := colour[s]; c != "" {
				row += c + glyph[s] + "\x1b[0m"
			} else {
				row += glyph[s]
			}
		}
		status := v.state.String()
		if v.state == holding && v.cur != nil && !d.cfg.nolock {
			status += " " + d.fenceNo(v.cur.fence)
		}
		line(row+"| ", 7+width+2, fmt.Sprintf("%-12s %3d %s", status, v.sections, v.note))
	}
	// The time axis, under the cells: its start and its end.
	end := fmtDur(axis)
	if axis%time.Second == 0 {
		end = axis.String()
	}
	line("", 0, fmt.Sprintf("       0s%*s", max(width+1-2, len(end)), end))
	var legend []string
	for _, s := range legendOrder {
		if seen[s] {
			legend = append(legend, glyph[s]+" "+d.legendText(s))
		}
	}
	line("", 0, "  "+strings.Join(legend, "  "))
	d.drawn = lines
	io.WriteString(d.out, b.String())
}

// overlapping is a time when two critical sections of different workers
// were both under way.
type overlapping struct {
	a, b     *section
	from, to time.Time
}

// overlaps lists every pair of critical sections of different workers
// that were under way at the same time, until now for those that have not
// ended. A fenced section is left out: its holder had lost the lock and
// the counter refused its write, so it changed nothing.
func (d *demo) overlaps(now time.Time) []overlapping {
	secs := slices.Clone(d.sections)
	slices.SortFunc(secs, func(a, b *section) int { return a.enter.Compare(b.enter) })
	endOf := func(s *section) time.Time {
		if s.end.IsZero() {
			return now
		}
		return s.end
	}
	var out []overlapping
	for i, s := range secs {
		if s.fenced {
			continue
		}
		// Sorted by entry: the first that enters after s ended ends the scan.
		for _, t := range secs[i+1:] {
			if !t.enter.Before(endOf(s)) {
				break
			}
			if t.fenced || t.w == s.w {
				continue
			}
			to := endOf(s)
			if e := endOf(t); e.Before(to) {
				to = e
			}
			out = append(out, overlapping{a: s, b: t, from: t.enter, to: to})
		}
	}
	return out
}

// overlapSpans gives, per worker, the times it was in a critical section
// while another worker was in one too, merged and in order.
func (d *demo) overlapSpans(now time.Time) [][]span {
	per := make([][]span, len(d.w))
	for _, o := range d.overlaps(now) {
		per[o.a.w] = append(per[o.a.w], span{o.from, o.to})
		per[o.b.w] = append(per[o.b.w], span{o.from, o.to})
	}
	for w, spans := range per {
		slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
		var merged []span
		for _, s := range spans {
			if n := len(merged); n > 0 && !s.from.After(merged[n-1].to) {
				if s.to.After(merged[n-1].to) {
					merged[n-1].to = s.to
				}
				continue
			}
			merged = append(merged, s)
		}
		per[w] = merged
	}
	return per
}

// results are the numbers of the summary.
type results struct {
	entered, committed, fenced, killed int
	overlaps                           int
	first                              *overlapping // the earliest overlap
	expected, got                      uint64
	handoffs                           []time.Duration
}

func (d *demo) results(now time.Time) results {
	var r results
	secs := slices.Clone(d.sections)
	slices.SortFunc(secs, func(a, b *section) int { return a.enter.Compare(b.enter) })
	for i, s := range secs {
		r.entered++
		switch {
		case s.committed:
			r.committed++
		case s.fenced:
			r.fenced++
		case s.killed:
			r.killed++
		}
		if i > 0 && !d.cfg.nolock {
			p := secs[i-1]
			if p.normal && p.w != s.w && s.waitT.Before(p.end) && !s.enter.Before(p.end) {
				r.handoffs = append(r.handoffs, s.enter.Sub(p.end))
			}
		}
	}
	ovl := d.overlaps(now)
	r.overlaps = len(ovl)
	for i := range ovl {
		if r.first == nil || ovl[i].from.Before(r.first.from) {
			r.first = &ovl[i]
		}
	}
	slices.Sort(r.handoffs)
	r.expected = uint64(r.committed)
	if n, _, err := readCounter(filepath.Join(d.dir, "counter")); err == nil {
		r.got = n
	} else {
		fmt.Fprintf(d.errOut, "dlockdemo: %v\n", err)
	}
	return r
}

// tellFirstOverlap adds the first overlap, if any, to the story.
func (d *demo) tellFirstOverlap(r results) {
	o := r.first
	if o == nil {
		return
	}
	loss := ""
	if o.a.committed && o.b.committed {
		loss = fmt.Sprintf(": it read the counter before w%d wrote it, so one of their updates is lost", o.a.w)
	}
	d.story(o.from, o.b.w, "OVERLAP   entered while w%d was inside (since %.3fs)%s", o.a.w, o.a.enter.Sub(d.t0).Seconds(), loss)
}

// summary prints the results and reports whether a locked run was right.
func (d *demo) summary(now time.Time, r results) bool {
	o := d.out
	mode := "with the lock"
	if d.cfg.nolock {
		mode = "WITHOUT the lock"
	}
	fmt.Fprintf(o, "\nsummary (%s, %s)\n", mode, fmtDur(now.Sub(d.t0)))
	fmt.Fprintf(o, "  workers            %d (about %d rounds each)\n", d.cfg.workers, d.cfg.rounds)
	fmt.Fprintf(o, "  critical sections  %d entered, %d committed, %d fenced out, %d killed inside\n", r.entered, r.committed, r.fenced, r.killed)
	fmt.Fprintf(o, "  overlaps           %d\n", r.overlaps)
	verdict := "ok"
	if r.got != r.expected {
		verdict = fmt.Sprintf("%d updates lost", int64(r.expected)-int64(r.got))
	}
	fmt.Fprintf(o, "  counter            expected %d, got %d: %s\n", r.expected, r.got, verdict)
	if !d.cfg.nolock {
		fmt.Fprintf(o, "  hand-off latency   p50 %s, p99 %s (%d hand-offs)\n",
			fmtDur(percentile(r.handoffs, 0.5)), fmtDur(percentile(r.handoffs, 0.99)), len(r.handoffs))
	}
	var rs []string
	for _, x := range d.reclaims {
		why := "process gone: no TIMEOUT wait"
		if x.how == "stopped" {
			why = "not refreshed for TIMEOUT"
		}
		rs = append(rs, fmt.Sprintf("w%d %s -> w%d, %s later (%s)", x.from, x.how, x.by, fmtDur(x.after), why))
	}
	fmt.Fprintf(o, "  reclaims           %d%s\n", len(d.reclaims), listSuffix(rs))
	var ls []string
	for _, w := range d.losses {
		ls = append(ls, fmt.Sprintf("w%d: late write refused by fence; Unlock: ErrLost", w))
	}
	fmt.Fprintf(o, "  losses             %d%s\n", len(d.losses), listSuffix(ls))
	if d.errors > 0 {
		fmt.Fprintf(o, "  errors             %d (see above)\n", d.errors)
	}
	bad := r.overlaps > 0 || r.got != r.expected || d.errors > 0
	switch {
	case d.cfg.nolock:
		fmt.Fprintf(o, "result: without the lock, %d overlaps and %d lost updates.\n        Run without -nolock to see the lock prevent them.\n",
			r.overlaps, int64(r.expected)-int64(r.got))
		return d.errors == 0
	case bad:
		fmt.Fprintln(o, "result: FAILED: the lock did not keep the critical sections apart")
		return false
	}
	fmt.Fprintln(o, "result: ok: no overlap, no lost update")
	return true
}

// listSuffix puts items on lines of their own under a summary line.
func listSuffix(items []string) string {
	var b strings.Builder
	for _, it := range items {
		b.WriteString("\n                     " + it)
	}
	return b.String()
}
