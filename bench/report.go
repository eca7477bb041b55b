package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

func writeJSON(w io.Writer, res []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// value returns the median of metric for impl.
func (r *report) value(metric, impl string) (float64, bool) {
	for _, x := range r.results {
		if x.Metric == metric && x.Impl == impl {
			return x.Value, true
		}
	}
	return 0, false
}

func (r *report) metrics() []string {
	var ms []string
	for _, x := range r.results {
		if len(ms) == 0 || ms[len(ms)-1] != x.Metric {
			ms = append(ms, x.Metric)
		}
	}
	return ms
}

func ratio(a, b float64, ok bool) string {
	if !ok || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func writeText(w io.Writer, r *report) {
	fmt.Fprintf(w, "dlock bench, %s\n", r.started.Format(time.DateTime))
	fmt.Fprintf(w, "machine: %s\n", machine())
	fmt.Fprintf(w, "locks in: %s (%s); %v\n\n", r.dir, r.fs, r.elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\timpl\tmedian\tunit\tn\t×flock\t×floor\t")
	for _, m := range r.metrics() {
		for _, x := range r.results {
			if x.Metric != m {
				continue
			}
			fl, okF := r.value(m, implFlock)
			fo, okO := r.value(m, implFloor)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", m, x.Impl, fmtNum(x.Value), x.Unit,
				r.samples[m+"/"+x.Impl], ratio(x.Value, fl, okF), ratio(x.Value, fo, okO))
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(acq_per_s: higher is better; every other metric: lower is better)")
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.targets() {
		fmt.Fprintf(w, "  %-5s %s\n", t.verdict, t.text)
	}
	for _, s := range r.warnings {
		fmt.Fprintln(w, "note:", s)
	}
}

func fmtNum(v float64) string {
	switch {
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

type target struct{ verdict, text string }

// targets checks the figures the project aims for.
func (r *report) targets() []target {
	var out []target
	add := func(metric, what string, ok bool, have bool, detail string) {
		v := "MISS"
		switch {
		case !have:
			v = "n/a"
		case ok:
			v = "met"
		}
		out = append(out, target{v, fmt.Sprintf("%s: %s (%s)", metric, what, detail)})
	}
	// Judged against the floors measured in this run, on this filesystem
	// (floor-checked: dlock's own system calls, as this filesystem allows
	// them), never against figures of another machine.
	d, okD := r.value("uncontended_ns", implDlock)
	o, okO := r.value("uncontended_ns", implFloor)
	c, okC := r.value("uncontended_ns", implFloorChecked)
	add("uncontended_ns", "dlock ≤ 2× floor-checked", d <= 2*c, okD && okC, fmt.Sprintf("%s vs %s ns, %.2f×", fmtNum(d), fmtNum(c), d/c))
	add("uncontended_ns", "dlock ≤ 3× floor", d <= 3*o, okD && okO, fmt.Sprintf("%.2f×", d/o))
	for _, m := range []string{"handoff_p50_us_2", "handoff_p99_us_2"} {
		d, okD = r.value(m, implDlock)
		w, okW := r.value(m, implFloorWatch)
		add(m, "dlock ≤ 2× floor-watch", d <= 2*w, okD && okW, fmt.Sprintf("%s vs %s µs, %.2f×", fmtNum(d), fmtNum(w), d/w))
	}
	var f float64
	var okF bool
	d, okD = r.value("acq_per_s_8", implDlock)
	f, okF = r.value("acq_per_s_8", implFlock)
	add("acq_per_s_8", "dlock ≥ 0.5× flock", d >= f/2, okD && okF, fmt.Sprintf("%s vs %s /s, %.2f×", fmtNum(d), fmtNum(f), d/f))
	d, okD = r.value("herd_cpu_us_64", implDlock)
	f, okF = r.value("herd_cpu_us_64", implFlock)
	add("herd_cpu_us_64", "dlock ≤ 3× flock", d <= 3*f, okD && okF, fmt.Sprintf("%s vs %s µs, %.2f×", fmtNum(d), fmtNum(f), d/f))
	d, okD = r.value("idle_cpu_ms", implDlock)
	add("idle_cpu_ms", "dlock < 5 ms per 5 s", d < 5, okD, fmt.Sprintf("%s ms", fmtNum(d)))
	return out
}

// writeSVGFile draws, for every metric, each implementation's median as a
// ratio to flock's, on a log scale (hand-written SVG, no dependencies).
func writeSVGFile(name string, r *report) error {
	type bar struct {
		metric, impl string
		ratio        float64
	}
	var bars []bar
	lo, hi := 0.5, 2.0
	for _, m := range r.metrics() {
		f, ok := r.value(m, implFlock)
		if !ok || f == 0 {
			continue
		}
		for _, x := range r.results {
			if x.Metric != m || x.Impl == implFlock || x.Value <= 0 {
				continue
			}
			q := x.Value / f
			bars = append(bars, bar{m, x.Impl, q})
			lo, hi = math.Min(lo, q), math.Max(hi, q)
		}
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	const (
		left, right, top, rowH, width = 260, 40, 60, 22, 900
	)
	plotW := float64(width - left - right)
	x := func(v float64) float64 {
		return left + plotW*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	colors := map[string]string{implDlock: "#1f77b4", implDlockPoll: "#9467bd", implFlockFD: "#2ca02c",
		implFloor: "#7f7f7f", implFloorChecked: "#c7c7c7", implFloorWatch: "#8c564b", implFloorMkdir: "#bcbd22", implEtcd: "#ff7f0e"}
	height := top + rowH*len(bars) + 70
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">dlock bench: median as a ratio to gofrs/flock (log scale; left of 1 = smaller)</text>`+"\n", 10)
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">%s — locks on %s (%s); acq_per_s: larger is better, all else: smaller is better</text>`+"\n",
		10, html.EscapeString(machine()), html.EscapeString(r.dir), r.fs)
	bottom := top + rowH*len(bars)
	for d := lo; d <= hi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v > hi*1.0001 {
				break
			}
			stroke := "#ddd"
			if v == 1 {
				stroke = "#000"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", x(v), top-4, x(v), bottom, stroke)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%g</text>`+"\n", x(v), bottom+16, v)
		}
	}
	for i, br := range bars {
		y := top + i*rowH
		x0, x1 := x(1), x(br.ratio)
		if x1 < x0 {
			x0, x1 = x1, x0
		}
		c := colors[br.impl]
		if c == "" {
			c = "#d62728"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s %s</text>`+"\n", left-8, y+15, br.metric, br.impl)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y+3, math.Max(x1-x0, 1), rowH-6, c)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#333">%.2f×</text>`+"\n", x1+4, y+15, br.ratio)
	}
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">cd bench; go run . -svg FILE</text>`+"\n", bottom+40)
	b.WriteString("</svg>\n")
	return os.WriteFile(name, []byte(b.String()), 0o644)
}
