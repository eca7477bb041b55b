package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// svgFill is the colour of each state's bar in the SVG timeline.
var svgFill = map[state]string{waiting: "#d9d9d9", holding: "#2ca02c", overlap: "#d62728", stale: "#c51b8a", stopped: "#ff9f1a"}

// markColour is the colour of each mark's line and label.
var markColour = map[string]string{"reclaimed": "#1f77b4", "fenced": "#c51b8a", "lost": "#d62728"}

// textWidth estimates the width in pixels of s in the SVG's sans-serif
// font of the given size: enough to keep labels apart.
func textWidth(s string, size float64) float64 {
	return 0.56 * size * float64(len([]rune(s)))
}

// svg draws the timeline as a standalone SVG picture: a row per worker,
// bars for waiting, holding and stopped, overlaps in red over the bars,
// and marks for kills, reclaims, refused writes and losses.
func (d *demo) svg(end time.Time, r results) string {
	const (
		left, right, top  = 60.0, 20.0, 60.0
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
	fmt.Fprintf(&b, `<text x="%.0f" y="38" fill="#333">%s</text>`+"\n", left, html.EscapeString(d.caption(end, r)))
	// Time axis: a tick per second (half a second for short runs, 10 s
	// for long ones).
	step := 1.0
	switch {
	case span > 30:
		step = 10
	case span < 3:
		step = 0.5
	}
	axisY := top + rowH*float64(len(d.w))
	for s := 0.0; s <= span+1e-9; s += step {
		px := left + plot*s/span
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#eee"/>`+"\n", px, top-5, px, axisY)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%gs</text>`+"\n", px, axisY+15, s)
	}
	seen := map[state]bool{}
	ovl := d.overlapSpans(end)
	for i, v := range d.w {
		y := top + rowH*float64(i)
		fmt.Fprintf(&b, `<text x="10" y="%.1f">w%d</text>`+"\n", y+barH-4, i)
		for _, s := range v.segs {
			to := s.to
			if to.IsZero() {
				to = end
			}
			if s.s == killed {
				seen[killed] = true
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#d62728" font-weight="bold" text-anchor="middle">✕ killed</text>`+"\n", x(s.from)+24, y+barH-4)
				continue
			}
			fill, ok := svgFill[s.s]
			if !ok {
				continue
			}
			seen[s.s] = true
			w := math.Max(x(to)-x(s.from), 0.5)
			if s.s == stale {
				w = math.Max(w, 3) // a few ms, but the point of the scene
			}
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.1f" width="%.2f" height="%.0f" fill="%s"><title>w%d %s %s–%s</title></rect>`+"\n",
				x(s.from), y, w, barH, fill, i, s.s, fmtDur(s.from.Sub(d.t0)), fmtDur(to.Sub(d.t0)))
		}
		for _, o := range ovl[i] {
			seen[overlap] = true
			w := math.Max(x(o.to)-x(o.from), 0.5)
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.1f" width="%.2f" height="%.0f" fill="%s"><title>w%d overlap %s–%s</title></rect>`+"\n",
				x(o.from), y, w, barH, svgFill[overlap], i, fmtDur(o.from.Sub(d.t0)), fmtDur(o.to.Sub(d.t0)))
		}
		// Marks: a line at the moment, a label above the bar. A label
		// starts after the one before it on the row ends (a worker's
		// write is fenced and its Unlock lost within milliseconds), and
		// stays inside the picture.
		nextX := 0.0
		for _, m := range v.marks {
			c := markColour[m.what]
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x(m.t), y-3, x(m.t), y+barH+3, c)
			tw := textWidth(m.what, 10)
			tx := math.Min(math.Max(x(m.t)+3, nextX), width-2-tw)
			nextX = tx + tw + 8
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="10">%s</text>`+"\n", tx, y-2, c, m.what)
		}
	}
	// The legend: only what the picture shows.
	ly := height - 15
	lx := left
	for _, s := range legendOrder {
		if !seen[s] || s == killed { // a kill is labelled where it happens
			continue
		}
		label := d.legendText(s)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", lx, ly-10, svgFill[s], lx+16, ly, html.EscapeString(label))
		lx += 16 + textWidth(label, 12) + 20
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// caption is the picture's line of figures, from the summary.
func (d *demo) caption(end time.Time, r results) string {
	lost := int64(r.expected) - int64(r.got)
	s := fmt.Sprintf("%s: %s, %s, counter %d of %d", fmtDur(end.Sub(d.t0)), count(r.entered, "critical section"), count(r.overlaps, "overlap"), r.got, r.expected)
	if lost != 0 {
		s += fmt.Sprintf(" (%s lost)", count(int(lost), "update"))
	}
	if !d.cfg.nolock {
		s += fmt.Sprintf(", %s, %s, %s", count(len(d.reclaims), "reclaim"), count(r.fenced, "refused write"), count(len(d.losses), "loss"))
	}
	return s
}

// count says "1 thing" or "n things".
func count(n int, thing string) string {
	switch {
	case n == 1:
		return "1 " + thing
	case strings.HasSuffix(thing, "s"):
		return fmt.Sprintf("%d %ses", n, thing)
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
