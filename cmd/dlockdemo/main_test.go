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
		for _, want := range []string{"KILLED", "STOPPED", "RECLAIMED from w1", "RECLAIMED from w2", "FENCED", "LOST", "result: ok"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in the output:\n%s", want, out)
			}
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
	})
	t.Run("nolock", func(t *testing.T) {
		t.Parallel()
		code, out, errOut := runDemo(t, bin, "-nolock", "-workers", "4", "-rounds", "10")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		if n := summaryNumber(t, out, `overlaps +(\d+)`); n[0] == 0 {
			t.Errorf("no overlaps without the lock:\n%s", out)
		}
		if !strings.Contains(out, "WITHOUT the lock") {
			t.Errorf("no word of running without the lock:\n%s", out)
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
