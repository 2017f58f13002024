package main

import (
	"fmt"
	"image/color"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// plotCompare draws compare's tables into one SVG, one panel each:
// throughput and server CPU per message per cell (bars, a colour per
// server); for cells run with idle connections held, the same two figures
// against the number held (lines); and memory per idle connection (bars).
func plotCompare(path string, sums []summary, idles []idleSummary, targets []string) error {
	var panels []*plot.Plot
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
	figures := []struct {
		title, unit string
		value       func(summary) float64
	}{
		{"Throughput", "messages/s", func(s summary) float64 { return s.MsgsPerS.Median }},
		{"Server CPU per message", "µs/message", func(s summary) float64 { return s.ServerCPU.Median }},
	}
	if len(cells) > 0 {
		for _, m := range figures {
			p, err := barPanel(m.title+" (median of runs)", m.unit, cells, targets, sums, m.value)
			if err != nil {
				return err
			}
			panels = append(panels, p)
		}
	}
	for _, base := range scaling {
		for _, m := range figures {
			p, err := scalingPanel(fmt.Sprintf("%s, %s + K idle connections", m.title, base), m.unit, base, sums, targets, m.value)
			if err != nil {
				return err
			}
			panels = append(panels, p)
		}
	}
	if len(idles) > 0 {
		p, err := idlePanel(idles)
		if err != nil {
			return err
		}
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return fmt.Errorf("nothing to plot: no run finished")
	}
	const w, h = 18 * vg.Centimeter, 9 * vg.Centimeter
	canvas := vgsvg.New(w, h*vg.Length(len(panels)))
	grid := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		grid[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	dcs := plot.Align(grid, tiles, draw.New(canvas))
	for i, p := range panels {
		p.Draw(dcs[i][0])
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

// barPanel draws value for every (cell, target) as grouped bars.
func barPanel(title, unit string, cells []cell, targets []string, sums []summary, value func(summary) float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.Y.Tick.Marker = countTicks{}
	p.Legend.Top = true
	var present []string
	for _, t := range targets {
		for _, s := range sums {
			if s.Target == t && s.Cell.HoldIdle == 0 {
				present = append(present, t)
				break
			}
		}
	}
	// About three quarters of each cell's share of the ~460pt wide plot
	// area, split among the servers.
	width := vg.Points(min(24, 0.75*460/float64(max(1, len(present)*len(cells)))))
	top := 0.0
	for i, t := range present {
		vs := make(plotter.Values, len(cells))
		for j, c := range cells {
			for _, s := range sums {
				if s.Target == t && s.Cell == c {
					vs[j] = value(s)
					top = max(top, vs[j])
				}
			}
		}
		bars, err := plotter.NewBarChart(vs, width)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = seriesColor(i)
		bars.Offset = width * vg.Length(float64(i)-float64(len(present)-1)/2)
		p.Add(bars)
		p.Legend.Add(t, bars)
	}
	names := make([]string, len(cells))
	for i, c := range cells {
		names[i] = c.String()
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(cells))-0.5
	// Head room for the legend, in the top left corner.
	p.Y.Min, p.Y.Max = 0, top*(1.15+0.07*float64(len(present)))
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Add(plotter.NewGrid())
	return p, nil
}

// scalingPanel draws value against the idle connections held, a line per
// server.
func scalingPanel(title, unit string, base cell, sums []summary, targets []string, value func(summary) float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "K idle connections"
	p.Y.Label.Text = unit
	p.Y.Tick.Marker = countTicks{}
	p.X.Tick.Marker = countTicks{}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	top, right, n := 0.0, 0.0, 0
	for i, t := range targets {
		var xys plotter.XYs
		for _, s := range sums {
			if s.Target == t && s.Cell.base() == base && value(s) > 0 {
				xys = append(xys, plotter.XY{X: float64(s.Cell.HoldIdle), Y: value(s)})
			}
		}
		if len(xys) < 2 {
			continue
		}
		n++
		for _, xy := range xys {
			top, right = max(top, xy.Y), max(right, xy.X)
		}
		slices.SortFunc(xys, func(a, b plotter.XY) int { return int(a.X - b.X) })
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		line.Color = seriesColor(i)
		line.Width = vg.Points(1.5)
		points.Color = seriesColor(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(t, line, points)
	}
	p.Y.Min, p.Y.Max = 0, top*(1.15+0.07*float64(n)) // room for the legend
	p.X.Min, p.X.Max = 0, right*1.07                 // and for the last tick label
	p.Add(plotter.NewGrid())
	return p, nil
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

// idlePanel draws the server memory per idle connection.
func idlePanel(idles []idleSummary) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Server RSS per idle connection, %d held open (median)", idles[0].Idle)
	p.Y.Label.Text = "bytes/connection"
	p.Y.Tick.Marker = countTicks{}
	vs := make(plotter.Values, len(idles))
	names := make([]string, len(idles))
	for i, s := range idles {
		vs[i] = max(s.PerConn.Median, 0)
		names[i] = s.Target
	}
	bars, err := plotter.NewBarChart(vs, vg.Points(20))
	if err != nil {
		return nil, err
	}
	bars.LineStyle.Width = 0
	bars.Color = color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}
	p.Add(bars)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	return p, nil
}

// palette has ten distinguishable colours (Tableau 10): compare can draw
// five models and four peers, more than plotutil's seven.
var palette = []color.RGBA{
	{0x4e, 0x79, 0xa7, 0xff}, {0xf2, 0x8e, 0x2b, 0xff}, {0xe1, 0x57, 0x59, 0xff}, {0x76, 0xb7, 0xb2, 0xff},
	{0x59, 0xa1, 0x4f, 0xff}, {0xed, 0xc9, 0x48, 0xff}, {0xb0, 0x7a, 0xa1, 0xff}, {0xff, 0x9d, 0xa7, 0xff},
	{0x9c, 0x75, 0x5f, 0xff}, {0xba, 0xb0, 0xac, 0xff},
}

func seriesColor(i int) color.Color { return palette[i%len(palette)] }
