package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildDemo builds the dlockdemo binary into a temporary directory.
func buildDemo(t *testing.T) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	bin := filepath.Join(t.TempDir(), "dlockdemo")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runDemo runs the demo with a deadline and returns its exit status and output.
func runDemo(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("dlockdemo %q did not finish; output so far:\n%s\n%s", args, stdout.String(), stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// summaryNumber reads an integer from the summary line starting with label.
func summaryNumber(t *testing.T, out, pattern string) []int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + pattern).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line matching %q in:\n%s", pattern, out)
	}
	var ns []int
	for _, s := range m[1:] {
		n, _ := strconv.Atoi(s)
		ns = append(ns, n)
	}
	return ns
}

func TestDemo(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the demo's scenes need POSIX signals")
	}
	bin := buildDemo(t)
	t.Run("locked", func(t *testing.T) {
		t.Parallel()
		svg := filepath.Join(t.TempDir(), "timeline.svg")
		dir := t.TempDir()
		code, out, errOut := runDemo(t, bin, "-workers", "3", "-rounds", "6", "-timeout", "1s", "-dir", dir, "-svg", svg)
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		if n := summaryNumber(t, out, `overlaps +(\d+)`); n[0] != 0 {
			t.Errorf("%d overlaps with the lock:\n%s", n[0], out)
		}
		c := summaryNumber(t, out, `counter +expected (\d+), got (\d+)`)
		if c[0] != c[1] || c[0] < 3*6-2 {
			t.Errorf("counter expected %d, got %d:\n%s", c[0], c[1], out)
		}
		// At least the two scenes (a worker starved of CPU for TIMEOUT on a
		// loaded machine would add its own, correctly).
		if n := summaryNumber(t, out, `reclaims +(\d+)`); n[0] < 2 {
			t.Errorf("%d reclaims, want 2 (the killed and the stopped holder):\n%s", n[0], out)
		}
		if n := summaryNumber(t, out, `losses +(\d+)`); n[0] < 1 {
			t.Errorf("%d losses, want 1 (the stopped holder):\n%s", n[0], out)
		}
		// Without a terminal and without -v: the story, not every round.
		for _, want := range []string{"fences start from the lock's creation time", "KILLED", "STOPPED", "RECLAIMED from w1", "RECLAIMED from w2", "SIGCONT", "FENCED", "LOST", "result: ok"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in the output:\n%s", want, out)
			}
		}
		if rounds := regexp.MustCompile(`(?m)round \d+$|done +\d+ critical sections`).FindAllString(out, -1); len(rounds) > 0 {
			t.Errorf("the routine of every round printed without -v (%q):\n%s", rounds, out)
		}
		if n := strings.Count(out, "\n"); n > 40 {
			t.Errorf("%d lines without a terminal, want the story and the summary:\n%s", n, out)
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("terminal escapes in output to a pipe")
		}
		// The demo cleans up after itself.
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("left behind in -dir: %v", ents)
		}
		// The SVG is well-formed XML with a bar per critical section.
		b, err := os.ReadFile(svg)
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(strings.NewReader(string(b)))
		for {
			if _, err := dec.Token(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("SVG is not well-formed: %v", err)
			}
		}
		if !strings.HasPrefix(string(b), "<svg") || strings.Count(string(b), "holding") < 3*6-1 {
			t.Errorf("SVG lacks the holding bars:\n%.500s", b)
		}
		if n := len(overlapRects(t, b)); n != 0 || strings.Contains(string(b), "OVERLAP") {
			t.Errorf("%d overlap bars, or an overlap in the legend, with the lock", n)
		}
	})
	t.Run("nolock", func(t *testing.T) {
		t.Parallel()
		svg := filepath.Join(t.TempDir(), "timeline.svg")
		code, out, errOut := runDemo(t, bin, "-nolock", "-v", "-workers", "4", "-rounds", "10", "-svg", svg)
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		overlaps := summaryNumber(t, out, `overlaps +(\d+)`)[0]
		if overlaps == 0 {
			t.Errorf("no overlaps without the lock:\n%s", out)
		}
		if !strings.Contains(out, "WITHOUT the lock") || !strings.Contains(out, "OVERLAP") {
			t.Errorf("no word of running without the lock, or of the first overlap:\n%s", out)
		}
		// -v: every round.
		if rounds := regexp.MustCompile(`(?m)round \d+$`).FindAllString(out, -1); len(rounds) < 4*10-4-1 {
			t.Errorf("-v printed %d rounds, want every one:\n%s", len(rounds), out)
		}
		// The overlaps are red in the picture, and the legend says so; it
		// lists nothing that did not happen.
		b, err := os.ReadFile(svg)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(overlapRects(t, b)); n == 0 {
			t.Errorf("no overlap bars in the SVG of a run with %d overlaps", overlaps)
		}
		for _, legend := range []string{"OVERLAP", "in its critical section"} {
			if !strings.Contains(string(b), legend) {
				t.Errorf("no %q in the SVG's legend", legend)
			}
		}
		for _, absent := range []string{">waiting<", ">stopped<", ">running after its lock was reclaimed<"} {
			if strings.Contains(string(b), absent) {
				t.Errorf("the SVG's legend lists %s, which a run without the lock has not", absent)
			}
		}
	})
	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		if code, _, errOut := runDemo(t, bin, "-workers", "0"); code != 2 || !strings.Contains(errOut, "-workers") {
			t.Errorf("-workers 0: exit %d, %q", code, errOut)
		}
		if code, _, errOut := runDemo(t, bin, "-h"); code != 0 || !strings.Contains(errOut, "Examples:") {
			t.Errorf("-h: exit %d, %q", code, errOut)
		}
	})
}

// The overlap count comes from the sections' intervals: check it on
// made-up ones, so that a zero in the demo means something.
func TestOverlapCount(t *testing.T) {
	d := newDemo(config{workers: 2, rounds: 2}, t.TempDir(), nil, io.Discard)
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d.sections = []*section{
		{w: 0, enter: at(0), end: at(10), normal: true, committed: true},
		{w: 1, waitT: at(1), enter: at(10), end: at(20), normal: true, committed: true},  // hands off at 10: no overlap
		{w: 0, waitT: at(12), enter: at(19), end: at(30), normal: true, committed: true}, // overlaps the one before
		{w: 1, waitT: at(35), enter: at(40), end: at(50), killed: true},                  // not waiting at 30: no hand-off
		{w: 0, enter: at(51)},
		{w: 1, enter: at(41), end: at(55), fenced: true}, // lost its lock: its write was refused
	}
	writeCounter(filepath.Join(d.dir, "counter"), 3, 0)
	r := d.results(at(60))
	if r.overlaps != 1 || r.entered != 6 || r.committed != 3 || r.killed != 1 || r.fenced != 1 || r.expected != 3 || r.got != 3 {
		t.Fatalf("results %+v", r)
	}
	if len(r.handoffs) != 1 || r.handoffs[0] != 0 {
		t.Fatalf("hand-offs %v, want one of 0s", r.handoffs)
	}
}

// overlapRects returns the SVG's bars that mark an overlap (their title
// says so), checking that they are red.
func overlapRects(t *testing.T, svg []byte) []string {
	t.Helper()
	var rects []string
	for _, m := range regexp.MustCompile(`<rect [^>]*fill="([^"]+)"><title>(w\d+ overlap [^<]*)</title>`).FindAllSubmatch(svg, -1) {
		if string(m[1]) != svgFill[overlap] {
			t.Errorf("overlap bar %q is %s, not red", m[2], m[1])
		}
		rects = append(rects, string(m[2]))
	}
	return rects
}

// twoOverlapping is a made-up run of two workers: w0 waits 10 ms, holds
// 10-50 ms; w1 holds 30-70 ms, overlapping w0 for 20 ms; w0's late write is
// fenced and its Unlock lost, both at 90 ms. The run ends at 100 ms.
func twoOverlapping(t *testing.T, nolock bool) (*demo, *strings.Builder, time.Time) {
	var out strings.Builder
	d := newDemo(config{workers: 2, rounds: 1, timeout: time.Second, nolock: nolock}, t.TempDir(), &out, io.Discard)
	d.cols = func() int { return 100 }
	d.t0 = time.Unix(1000, 0)
	at := func(ms int) time.Time { return d.t0.Add(time.Duration(ms) * time.Millisecond) }
	d.setState(0, waiting, at(0))
	d.setState(0, holding, at(10))
	d.setState(0, idle, at(50))
	d.setState(1, holding, at(30))
	d.setState(1, done, at(70))
	d.sections = []*section{
		{w: 0, enter: at(10), end: at(50), normal: true, committed: true},
		{w: 1, enter: at(30), end: at(70), normal: true, committed: true},
	}
	d.w[0].marks = []mark{{at(90), "fenced"}, {at(90), "lost"}}
	writeCounter(filepath.Join(d.dir, "counter"), 1, 0)
	return d, &out, at(100)
}

// The terminal's last picture: overlaps in red, the time axis of the whole
// run (what the summary says), and a legend of what it shows.
func TestRenderFinal(t *testing.T) {
	d, out, end := twoOverlapping(t, true)
	d.render(end, true)
	got := out.String()
	t.Logf("\n%s", got)
	red := colour[overlap] + glyph[overlap]
	for w := range 2 {
		row := regexp.MustCompile(`(?m)^.*  w` + strconv.Itoa(w) + ` .*$`).FindString(got)
		if !strings.Contains(row, red) {
			t.Errorf("w%d's row marks no overlap in red: %q", w, row)
		}
	}
	if n := strings.Count(got, fmtDur(100*time.Millisecond)); n != 2 {
		t.Errorf("the run's 100ms appears %d times, want in the header and at the end of the axis", n)
	}
	if strings.Contains(got, " of 5s") || strings.Contains(got, "5s\n") {
		t.Errorf("the last picture's axis is not the run's")
	}
	legend := regexp.MustCompile(`(?m)^.*OVERLAP.*$`).FindString(got)
	for _, want := range []string{"# in its critical section", "& OVERLAP"} {
		if !strings.Contains(legend, want) {
			t.Errorf("legend %q lacks %q", legend, want)
		}
	}
	for _, absent := range []string{"Z stopped", "X killed", "! running"} {
		if strings.Contains(legend, absent) {
			t.Errorf("legend %q lists %q, which did not happen", legend, absent)
		}
	}
}

// Labels of marks at the same moment are drawn one after the other, not
// on top of each other.
func TestSVGLabelsApart(t *testing.T) {
	d, _, end := twoOverlapping(t, true)
	svg := d.svg(end, d.results(end))
	x := map[string]float64{}
	for _, m := range regexp.MustCompile(`<text x="([0-9.]+)"[^>]*>(fenced|lost)</text>`).FindAllStringSubmatch(svg, -1) {
		x[m[2]], _ = strconv.ParseFloat(m[1], 64)
	}
	if len(x) != 2 {
		t.Fatalf("labels %v, want fenced and lost", x)
	}
	if x["lost"] < x["fenced"]+textWidth("fenced", 10) || x["lost"]+textWidth("lost", 10) > 1000 {
		t.Errorf("label lost at x=%.1f runs into fenced at x=%.1f, or out of the picture", x["lost"], x["fenced"])
	}
	if len(overlapRects(t, []byte(svg))) != 2 {
		t.Errorf("want one overlap bar on each worker's row:\n%s", svg)
	}
}
