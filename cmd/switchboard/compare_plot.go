package main

import (
	"fmt"
	"image/color"
	"os"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// figure is one of the three things compare measures per cell.
type figure struct {
	name  string
	unit  string
	ticks plot.Ticker
	value func(summary) stat
}

// figures are drawn in the order of the table's columns.
var figures = []figure{
	{"Throughput", "messages/s", countTicks{}, func(s summary) stat {
		if s.Fixed != nil {
			return s.Fixed.Achieved // the rate the schedule held, beside the offered line
		}
		return s.MsgsPerS
	}},
	{"p99 latency", "p99 latency", usTicks{}, func(s summary) stat { return s.P99 }},
	{"Server CPU per message", "server µs/message", countTicks{}, func(s summary) stat { return s.ServerCPU }},
}

// Chart geometry.
const (
	chartWidth  = 20 * vg.Centimeter
	legendH     = 1.6 * vg.Centimeter
	cellRowH    = 5 * vg.Centimeter
	scalingRowH = 7 * vg.Centimeter
	headingH    = 8 * vg.Millimeter
	idleRowH    = 7 * vg.Centimeter
	maxCols     = 4 // cells side by side before the grid wraps
)

// plotCompare draws compare's tables into one SVG. Each cell gets a column
// of small panels, throughput, p99 latency and server CPU per message, each
// with its own scale, so a cell of 200,000 messages/s is not flattened
// beside one of 3,000,000: what a chart of servers must show is how they
// differ within a cell. Bars are medians, whiskers the min-max over the
// repeats. Idle-scaling cells are lines against the idle connections
// held, and idle memory bars per server. One legend at the top gives each
// server its colour in every panel.
func plotCompare(path string, sums []summary, idles []idleSummary, targets []string) error {
	var cells, scaling []cell // in the order of the table
	for _, s := range sums {
		if s.Cell.HoldIdle > 0 && !slices.Contains(scaling, s.Cell.base()) {
			scaling = append(scaling, s.Cell.base())
		}
	}
	for _, s := range sums {
		// A cell with idle-scaling runs is drawn as lines, K = 0 included.
		if s.Cell.HoldIdle == 0 && !slices.Contains(scaling, s.Cell) && !slices.Contains(cells, s.Cell) {
			cells = append(cells, s.Cell)
		}
	}
	if len(cells)+len(scaling)+len(idles) == 0 {
		return fmt.Errorf("nothing to plot: no run finished")
	}
	colour := func(name string) color.Color { return seriesColor(max(0, slices.Index(targets, name))) }
	// Only servers that ran something take a place in the legend and the
	// bar panels; each keeps its colour from its place among targets.
	var ran []string
	for _, t := range targets {
		if slices.ContainsFunc(sums, func(s summary) bool { return s.Target == t }) ||
			slices.ContainsFunc(idles, func(s idleSummary) bool { return s.Target == t }) {
			ran = append(ran, t)
		}
	}

	// Blocks of panels, top to bottom; each is aligned on its own.
	type block struct {
		heading string // a line above the panels, or ""
		grid    [][]*plot.Plot
		height  vg.Length
	}
	var blocks []block
	for lo := 0; lo < len(cells); lo += maxCols {
		row := cells[lo:min(lo+maxCols, len(cells))]
		grid := make([][]*plot.Plot, len(figures))
		for i, fig := range figures {
			for j, c := range row {
				p, err := cellPanel(fig, c, sums, ran, colour)
				if err != nil {
					return err
				}
				if i == 0 {
					p.Title.Text = fmt.Sprintf("%s conns, %s, P=%d", fmtCount(float64(c.Conns)), fmtBytes(float64(c.Size)), c.Pipeline)
					if c.Rate > 0 {
						p.Title.Text += ", at " + fmtCount(c.Rate) + "/s"
						if err := addOffered(p, c.Rate); err != nil {
							return err
						}
					}
					p.Title.TextStyle.Font.Size = vg.Points(9)
				}
				if j == 0 {
					p.Y.Label.Text = fig.unit
				}
				grid[i] = append(grid[i], p)
			}
			for len(grid[i]) < min(maxCols, len(cells)) {
				grid[i] = append(grid[i], nil) // a short last row keeps the columns' width
			}
		}
		blocks = append(blocks, block{grid: grid, height: cellRowH * vg.Length(len(figures))})
	}
	for _, base := range scaling {
		var row []*plot.Plot
		for _, fig := range figures {
			p, err := scalingPanel(fig, base, sums, targets, colour)
			if err != nil {
				return err
			}
			row = append(row, p)
		}
		heading := fmt.Sprintf("Idle scaling: %s connections, %s messages, pipeline %d, with K idle connections held open",
			fmtCount(float64(base.Conns)), fmtBytes(float64(base.Size)), base.Pipeline)
		blocks = append(blocks, block{heading: heading, grid: [][]*plot.Plot{row}, height: scalingRowH + headingH})
	}
	if len(idles) > 0 {
		p, err := idlePanel(idles, colour)
		if err != nil {
			return err
		}
		blocks = append(blocks, block{grid: [][]*plot.Plot{{p}}, height: idleRowH})
	}

	height := legendH
	for _, b := range blocks {
		height += b.height
	}
	canvas := vgsvg.New(chartWidth, height)
	dc := draw.New(canvas)
	drawLegend(draw.Crop(dc, 0, 0, height-legendH, 0), targets, ran, sums, idles)
	top := height - legendH
	for _, b := range blocks {
		area := draw.Crop(dc, 0, 0, top-b.height, top-height)
		if b.heading != "" {
			sty := textStyle(10)
			sty.YAlign = draw.YCenter
			area.FillText(sty, vg.Point{X: area.Min.X + 4*vg.Millimeter, Y: area.Max.Y - headingH/2}, b.heading)
			area = draw.Crop(area, 0, 0, 0, -headingH)
		}
		tiles := draw.Tiles{Rows: len(b.grid), Cols: len(b.grid[0]), PadX: 3 * vg.Millimeter, PadY: 3 * vg.Millimeter,
			PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 3 * vg.Millimeter}
		dcs := plot.Align(b.grid, tiles, area)
		for i, row := range b.grid {
			for j, p := range row {
				if p != nil {
					p.Draw(dcs[i][j])
				}
			}
		}
		top -= b.height
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// textStyle is plot's default font at size points.
func textStyle(size float64) text.Style {
	return text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(size)), Handler: plot.DefaultTextHandler}
}

// drawLegend writes, across the top of the chart, each server's colour
// and name, and under them how to read the panels.
func drawLegend(c draw.Canvas, targets, ran []string, sums []summary, idles []idleSummary) {
	sty := textStyle(10)
	sty.YAlign = draw.YCenter
	x, y := c.Min.X+4*vg.Millimeter, c.Max.Y-6*vg.Millimeter
	sw := 3 * vg.Millimeter
	for _, t := range ran {
		// A viewer may substitute a wider serif than the one measured.
		w := sty.Width(t) * 1.2
		if x+sw+w > c.Max.X {
			break // too many to name on one line; the table names them all
		}
		c.FillPolygon(seriesColor(slices.Index(targets, t)), []vg.Point{{X: x, Y: y - sw/2}, {X: x + sw, Y: y - sw/2}, {X: x + sw, Y: y + sw/2}, {X: x, Y: y + sw/2}})
		c.FillText(sty, vg.Point{X: x + sw + vg.Millimeter, Y: y}, t)
		x += sw + w + 4*vg.Millimeter
	}
	runs := 0
	for _, s := range sums {
		runs = max(runs, s.Runs)
	}
	for _, s := range idles {
		runs = max(runs, s.Runs)
	}
	note := fmt.Sprintf("median of %s; whiskers: min-max", plural(runs, "run"))
	if len(sums) > 0 {
		note += "; every panel has its own scale; P: messages in flight per connection"
	}

	small := textStyle(8)
	small.YAlign = draw.YCenter
	below := 6 * vg.Millimeter
	if slices.ContainsFunc(sums, func(s summary) bool { return s.Fixed != nil }) {
		below = 5 * vg.Millimeter // room for a second line above the panels' titles
		c.FillText(small, vg.Point{X: c.Min.X + 4*vg.Millimeter, Y: y - below - 3.3*vg.Millimeter},
			"open loop: dashed, the rate offered to every server; *, a server that did not hold it (its figures are at a lower rate)")
	}
	c.FillText(small, vg.Point{X: c.Min.X + 4*vg.Millimeter, Y: y - below}, note)
}

// cellPanel draws fig for every server that ran cell c: one bar each, in
// the server's colour, with the min-max whisker.
func cellPanel(fig figure, c cell, sums []summary, targets []string, colour func(string) color.Color) (*plot.Plot, error) {
	p := newPanel(fig.ticks)
	p.HideX()
	p.X.Min, p.X.Max = -0.6, float64(len(targets))-0.4
	top := 0.0
	var whiskers plotter.YErrors
	var at plotter.XYs
	var missed plotter.XYLabels // servers short of a fixed rate
	for i, t := range targets {
		for _, s := range sums {
			if s.Target != t || s.Cell != c {
				continue
			}
			st := fig.value(s)
			if st.Median <= 0 {
				continue
			}
			bars, err := plotter.NewBarChart(plotter.Values{st.Median}, vg.Points(max(4, 80/float64(len(targets)))))
			if err != nil {
				return nil, err
			}
			bars.XMin = float64(i)
			bars.LineStyle.Width = 0
			bars.Color = colour(t)
			p.Add(bars)
			at = append(at, plotter.XY{X: float64(i), Y: st.Median})
			whiskers = append(whiskers, struct{ Low, High float64 }{st.Median - st.Min, st.Max - st.Median})
			top = max(top, st.Max)
			if s.Fixed != nil && !s.Fixed.Held {
				missed.XYs = append(missed.XYs, plotter.XY{X: float64(i), Y: st.Max})
				missed.Labels = append(missed.Labels, "*")
			}
		}
	}
	if err := addWhiskers(p, at, whiskers); err != nil {
		return nil, err
	}
	if len(missed.XYs) > 0 {
		// The table's mark: this server's figure is not at the offered rate.
		labels, err := plotter.NewLabels(missed)
		if err != nil {
			return nil, err
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].Font.Size = vg.Points(12)
			labels.TextStyle[i].XAlign = draw.XCenter
		}
		labels.Offset = vg.Point{Y: vg.Millimeter}
		p.Add(labels)
	}
	p.Y.Min, p.Y.Max = 0, max(top*1.12, 1e-9)
	return p, nil
}

// scalingPanel draws fig against the idle connections held, a line per
// server, with whiskers.
func scalingPanel(fig figure, base cell, sums []summary, targets []string, colour func(string) color.Color) (*plot.Plot, error) {
	p := newPanel(fig.ticks)
	p.Title.Text = fig.name
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "K idle connections"
	p.Y.Label.Text = fig.unit
	p.X.Tick.Marker = countTicks{}
	top, right := 0.0, 0.0
	for i, t := range targets {
		var xys plotter.XYs
		var whiskers plotter.YErrors
		for _, s := range sums {
			if st := fig.value(s); s.Target == t && s.Cell.base() == base && st.Median > 0 {
				xys = append(xys, plotter.XY{X: float64(s.Cell.HoldIdle), Y: st.Median})
				whiskers = append(whiskers, struct{ Low, High float64 }{st.Median - st.Min, st.Max - st.Median})
				top, right = max(top, st.Max), max(right, float64(s.Cell.HoldIdle))
			}
		}
		if len(xys) < 2 {
			continue
		}
		order := make([]int, len(xys))
		for k := range order {
			order[k] = k
		}
		slices.SortFunc(order, func(a, b int) int { return int(xys[a].X - xys[b].X) })
		sorted, sortedW := make(plotter.XYs, len(xys)), make(plotter.YErrors, len(xys))
		for k, o := range order {
			sorted[k], sortedW[k] = xys[o], whiskers[o]
		}
		line, points, err := plotter.NewLinePoints(sorted)
		if err != nil {
			return nil, err
		}
		line.Color = colour(t)
		line.Width = vg.Points(1.5)
		points.Color = colour(t)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		if err := addWhiskers(p, sorted, sortedW, colour(t)); err != nil {
			return nil, err
		}
	}
	p.Y.Min, p.Y.Max = 0, max(top*1.08, 1e-9)
	p.X.Min, p.X.Max = 0, max(right*1.07, 1) // room for the last tick label
	return p, nil
}

// idlePanel draws the server memory per idle connection, a bar per
// server with the min-max whisker.
func idlePanel(idles []idleSummary, colour func(string) color.Color) (*plot.Plot, error) {
	p := newPanel(countTicks{})
	p.Title.Text = fmt.Sprintf("Server RSS per idle connection, %s held open", fmtCount(float64(idles[0].Idle)))
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.Y.Label.Text = "bytes/connection"
	names := make([]string, len(idles))
	var at plotter.XYs
	var whiskers plotter.YErrors
	top := 0.0
	for i, s := range idles {
		names[i] = s.Target
		st := s.PerConn
		bars, err := plotter.NewBarChart(plotter.Values{max(st.Median, 0)}, vg.Points(24))
		if err != nil {
			return nil, err
		}
		bars.XMin = float64(i)
		bars.LineStyle.Width = 0
		bars.Color = colour(s.Target)
		p.Add(bars)
		if st.Median > 0 {
			at = append(at, plotter.XY{X: float64(i), Y: st.Median})
			whiskers = append(whiskers, struct{ Low, High float64 }{st.Median - max(st.Min, 0), st.Max - st.Median})
		}
		top = max(top, st.Max)
	}
	if err := addWhiskers(p, at, whiskers); err != nil {
		return nil, err
	}
	// The figure over each bar: a server whose connections cost no user
	// memory (the C peer's live in the kernel) would otherwise show nothing.
	var marks plotter.XYLabels
	for i, s := range idles {
		marks.XYs = append(marks.XYs, plotter.XY{X: float64(i), Y: max(s.PerConn.Max, 0)})
		marks.Labels = append(marks.Labels, fmtBytes(max(s.PerConn.Median, 0)))
	}
	labels, err := plotter.NewLabels(marks)
	if err != nil {
		return nil, err
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].Font.Size = vg.Points(8)
		labels.TextStyle[i].XAlign = draw.XCenter
	}
	labels.Offset = vg.Point{Y: 2 * vg.Millimeter}
	p.Add(labels)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	p.Y.Min, p.Y.Max = 0, max(top*1.15, 1) // room for the labels
	return p, nil
}

// addOffered draws a fixed-rate cell's offered rate across its
// throughput panel, so a server short of it shows as a bar below the line.
func addOffered(p *plot.Plot, rate float64) error {
	line, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: rate}, {X: p.X.Max, Y: rate}})
	if err != nil {
		return err
	}
	line.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
	line.Width = vg.Points(0.8)
	p.Add(line)
	p.Y.Max = max(p.Y.Max, rate*1.08)
	return nil
}

// newPanel is a plot with the chart's common style.
func newPanel(ticks plot.Ticker) *plot.Plot {
	p := plot.New()
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.Y.Tick.Marker = ticks
	p.Y.Label.TextStyle.Font.Size = vg.Points(10)
	p.Y.Tick.Label.Font.Size = vg.Points(8)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.X.Label.TextStyle.Font.Size = vg.Points(9)
	p.Add(plotter.NewGrid())
	return p
}

// addWhiskers draws the min-max range around each point at, in c or black.
func addWhiskers(p *plot.Plot, at plotter.XYs, whiskers plotter.YErrors, c ...color.Color) error {
	if len(at) == 0 {
		return nil
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{at, whiskers})
	if err != nil {
		return err
	}
	eb.LineStyle.Width = vg.Points(0.8)
	eb.CapWidth = vg.Points(4)
	if len(c) > 0 {
		eb.LineStyle.Color = c[0]
	}
	p.Add(eb)
	return nil
}

// countTicks labels an axis with whole numbers and thousands separators
// (1,000,000 rather than 1e+06).
type countTicks struct{}

func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			if hi-lo < 10 {
				ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', 3, 64)
			} else {
				ts[i].Label = fmtCount(ts[i].Value)
			}
		}
	}
	return ts
}

// usTicks labels an axis of microseconds as durations: 500µs, 1.00ms.
type usTicks struct{}

func (usTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = trimZeros(fmtUs(ts[i].Value))
		}
	}
	return ts
}

// trimZeros drops the zeros a round tick value does not need from a
// figure and its unit: "8.00ms" is "8ms", "2.50ms" "2.5ms".
func trimZeros(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], s[i:]
	if strings.Contains(num, ".") {
		num = strings.TrimRight(strings.TrimRight(num, "0"), ".")
	}
	if num == "0" {
		return "0"
	}
	return num + unit
}

// palette has eleven distinguishable colours (Tableau 10 and a dark
// grey): compare can draw six models and five peers, more than plotutil's
// seven.
var palette = []color.RGBA{
	{0x4e, 0x79, 0xa7, 0xff}, {0xf2, 0x8e, 0x2b, 0xff}, {0xe1, 0x57, 0x59, 0xff}, {0x76, 0xb7, 0xb2, 0xff},
	{0x59, 0xa1, 0x4f, 0xff}, {0xed, 0xc9, 0x48, 0xff}, {0xb0, 0x7a, 0xa1, 0xff}, {0xff, 0x9d, 0xa7, 0xff},
	{0x9c, 0x75, 0x5f, 0xff}, {0xba, 0xb0, 0xac, 0xff}, {0x3b, 0x3b, 0x3b, 0xff},
}

func seriesColor(i int) color.Color { return palette[i%len(palette)] }
