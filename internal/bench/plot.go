package bench

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotResult draws a scenario's SVG plots into dir and returns their file
// names (relative to dir).
func plotResult(dir string, sc Scenario, r *Result) ([]string, error) {
	if sc.Plot == nil || len(r.Series) == 0 {
		return nil, nil
	}
	return sc.Plot(dir, r)
}

func save(p *plot.Plot, dir, name string, w, h vg.Length) (string, error) {
	file := name + ".svg"
	if err := p.Save(w, h, filepath.Join(dir, file)); err != nil {
		return "", fmt.Errorf("save %s: %w", file, err)
	}
	return file, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	return p
}

// cdf returns the empirical distribution of xs as points.
func cdf(xs []float64) plotter.XYs {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	const maxPoints = 400 // keeps the SVG small; the samples stay in results.json
	step := max(1, len(s)/maxPoints)
	pts := make(plotter.XYs, 0, len(s)/step+1)
	for i := 0; i < len(s); i += step {
		pts = append(pts, plotter.XY{X: s[i], Y: float64(i+1) / float64(len(s))})
	}
	if last := len(s) - 1; (last % step) != 0 {
		pts = append(pts, plotter.XY{X: s[last], Y: 1})
	}
	return pts
}

// plotCDF: the latency distribution of every series as a CDF.
func plotCDF(dir string, r *Result) ([]string, error) {
	p := newPlot(r.Title, "latency (ms)", "fraction of invokes ≤ x")
	var args []any
	for _, s := range r.Series {
		if len(s.Samples) > 0 {
			args = append(args, s.Name, cdf(s.Samples))
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return nil, err
	}
	f, err := save(p, dir, r.Name, 6*vg.Inch, 4*vg.Inch)
	if err != nil {
		return nil, err
	}
	return []string{f}, nil
}

// plotBoxes: one box per series (Tukey box plot), e.g. one per burst level.
func plotBoxes(dir string, r *Result) ([]string, error) {
	p := newPlot(r.Title, "", "latency (ms)")
	var names []string
	for _, s := range r.Series {
		if len(s.Samples) == 0 {
			continue
		}
		b, err := plotter.NewBoxPlot(vg.Points(30), float64(len(names)), plotter.Values(s.Samples))
		if err != nil {
			return nil, err
		}
		p.Add(b)
		names = append(names, s.Name)
	}
	if len(names) == 0 {
		return nil, nil
	}
	p.NominalX(names...)
	f, err := save(p, dir, r.Name, vg.Length(max(4, len(names)+2))*vg.Inch, 4*vg.Inch)
	if err != nil {
		return nil, err
	}
	return []string{f}, nil
}

// plotPhases: mean of each phase, stacked; one bar for the whole cold start
// and one breaking the process phase into its sandbox_* sub-phases.
func plotPhases(dir string, r *Result) ([]string, error) {
	p := newPlot(r.Title+" (mean per cold start)", "", "ms")
	p.Legend.Top = true
	p.Legend.Left = false
	var top, sub []*Series
	for _, s := range r.Series {
		if len(s.Samples) == 0 {
			continue
		}
		if strings.HasPrefix(s.Name, "sandbox_") {
			sub = append(sub, s)
		} else {
			top = append(top, s)
		}
	}
	// Each phase contributes its total over the number of cold starts
	// (phases that only some cold starts have, like an unpooled clone,
	// weigh accordingly).
	coldStarts := 0
	for _, s := range top {
		coldStarts = max(coldStarts, len(s.Samples))
	}
	per := func(s *Series) float64 { return Mean(s.Samples) * float64(len(s.Samples)) / float64(coldStarts) }
	w := vg.Points(40)
	stack := func(ss []*Series, x int, offset int) error {
		var below *plotter.BarChart
		for i, s := range ss {
			vals := plotter.Values{0, 0}
			vals[x] = per(s)
			b, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return err
			}
			b.Color = plotutil.Color(i + offset)
			b.LineStyle.Width = vg.Points(0.5)
			if below != nil {
				b.StackOn(below)
			}
			below = b
			p.Add(b)
			p.Legend.Add(fmt.Sprintf("%s %.2f ms", s.Name, per(s)), b)
		}
		return nil
	}
	if err := stack(top, 0, 0); err != nil {
		return nil, err
	}
	if err := stack(sub, 1, len(top)); err != nil {
		return nil, err
	}
	p.NominalX("cold start", "process: sandbox sub-phases")
	p.X.Min, p.X.Max = -0.7, 2.8 // room for the legend on the right
	f, err := save(p, dir, r.Name, 8*vg.Inch, 5*vg.Inch)
	if err != nil {
		return nil, err
	}
	return []string{f}, nil
}

// plotWarm: throughput against concurrency, and the c=1 latency CDF.
func plotWarm(dir string, r *Result) ([]string, error) {
	var out []string
	var pts plotter.XYs
	for _, v := range r.Values {
		var c float64
		if _, err := fmt.Sscanf(v.Name, "throughput c=%g", &c); err == nil {
			pts = append(pts, plotter.XY{X: c, Y: v.Value})
		}
	}
	if len(pts) > 0 {
		p := newPlot("Warm throughput", "concurrent clients", "invokes/s")
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		if err := plotutil.AddLinePoints(p, "throughput", pts); err != nil {
			return nil, err
		}
		f, err := save(p, dir, r.Name+"-throughput", 6*vg.Inch, 4*vg.Inch)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	p := newPlot("Warm invoke latency", "latency (ms)", "fraction of invokes ≤ x")
	var args []any
	for _, s := range r.Series {
		if len(s.Samples) > 0 {
			args = append(args, s.Name, cdf(s.Samples))
		}
	}
	if len(args) > 0 {
		if err := plotutil.AddLines(p, args...); err != nil {
			return nil, err
		}
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		f, err := save(p, dir, r.Name+"-latency", 6*vg.Inch, 4*vg.Inch)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// xyAgainst pairs series y with series x (same length).
func xyAgainst(r *Result, x string, ys ...string) []any {
	var xs []float64
	for _, s := range r.Series {
		if s.Name == x {
			xs = s.Samples
		}
	}
	var args []any
	for _, y := range ys {
		for _, s := range r.Series {
			if s.Name != y || len(s.Samples) != len(xs) || len(xs) == 0 {
				continue
			}
			pts := make(plotter.XYs, len(xs))
			for i := range xs {
				pts[i] = plotter.XY{X: xs[i], Y: s.Samples[i]}
			}
			args = append(args, s.Name, pts)
		}
	}
	return args
}

func plotMemory(dir string, r *Result) ([]string, error) {
	args := xyAgainst(r, "environments", "host memory used (delta)", "functions' private memory", "server RSS (delta)", "kernel memory (delta)")
	if len(args) == 0 {
		return nil, nil
	}
	p := newPlot("Memory as idle environments accumulate", "idle environments", "MB")
	p.Legend.Top, p.Legend.Left = true, true
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	f, err := save(p, dir, r.Name, 6*vg.Inch, 4*vg.Inch)
	if err != nil {
		return nil, err
	}
	return []string{f}, nil
}

func plotSharing(dir string, r *Result) ([]string, error) {
	args := xyAgainst(r, "functions", "server RSS")
	if len(args) == 0 {
		return nil, nil
	}
	p := newPlot("Server memory as functions are created", "functions", "server RSS (MB)")
	p.Y.Min = 0
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	f, err := save(p, dir, r.Name, 6*vg.Inch, 4*vg.Inch)
	if err != nil {
		return nil, err
	}
	return []string{f}, nil
}
