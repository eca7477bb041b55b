package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// svgFill is the colour of each state's bar in the SVG timeline.
var svgFill = map[state]string{waiting: "#d9d9d9", holding: "#2ca02c", stale: "#c51b8a", stopped: "#ff9f1a"}

// svg draws the timeline as a standalone SVG picture: a row per worker,
// bars for waiting, holding and stopped, and marks for kills, reclaims,
// refused writes and losses.
func (d *demo) svg(end time.Time) string {
	const (
		left, right, top  = 60.0, 20.0, 50.0
		width, rowH, barH = 1000.0, 30.0, 18.0
	)
	span := end.Sub(d.t0).Seconds()
	if span <= 0 {
		span = 1
	}
	plot := width - left - right
	x := func(t time.Time) float64 { return left + plot*t.Sub(d.t0).Seconds()/span }
	height := top + rowH*float64(len(d.w)) + 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	mode := "with the lock"
	if d.cfg.nolock {
		mode = "WITHOUT the lock"
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="bold">dlockdemo: %d workers, about %d rounds each, TIMEOUT %s, %s</text>`+"\n",
		left, len(d.w), d.cfg.rounds, html.EscapeString(d.cfg.timeout.String()), mode)
	// Time axis: a tick per second (or per 10 s for long runs).
	step := 1.0
	if span > 30 {
		step = 10
	}
	axisY := top + rowH*float64(len(d.w))
	for s := 0.0; s <= span+1e-9; s += step {
		px := left + plot*s/span
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#eee"/>`+"\n", px, top-5, px, axisY)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%gs</text>`+"\n", px, axisY+15, s)
	}
	for i, v := range d.w {
		y := top + rowH*float64(i)
		fmt.Fprintf(&b, `<text x="10" y="%.1f">w%d</text>`+"\n", y+barH-4, i)
		for _, s := range v.segs {
			to := s.to
			if to.IsZero() {
				to = end
			}
			if s.s == killed {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#d62728" font-weight="bold" text-anchor="middle">✕ killed</text>`+"\n", x(s.from)+24, y+barH-4)
				continue
			}
			fill, ok := svgFill[s.s]
			if !ok {
				continue
			}
			w := math.Max(x(to)-x(s.from), 0.5)
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.1f" width="%.2f" height="%.0f" fill="%s"><title>w%d %s %s–%s</title></rect>`+"\n",
				x(s.from), y, w, barH, fill, i, s.s, fmtDur(s.from.Sub(d.t0)), fmtDur(to.Sub(d.t0)))
		}
		for _, m := range v.marks {
			colour := map[string]string{"reclaimed": "#1f77b4", "fenced": "#c51b8a", "lost": "#d62728"}[m.what]
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x(m.t), y-3, x(m.t), y+barH+3, colour)
			tx := x(m.t) + 3 // above the bar; "lost" comes right after "fenced": beside it
			if m.what == "lost" {
				tx += 36
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="10">%s</text>`+"\n", tx, y-2, colour, m.what)
		}
	}
	// Legend.
	ly := height - 15
	lx := left
	for _, it := range []struct{ fill, label string }{{"#2ca02c", "holding"}, {"#d9d9d9", "waiting"}, {"#ff9f1a", "stopped"}, {"#c51b8a", "running after its lock was reclaimed"}} {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", lx, ly-10, it.fill, lx+16, ly, it.label)
		lx += 30 + 7*float64(len(it.label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
