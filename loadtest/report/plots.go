package report

import (
	"fmt"
	"image/color"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/wakepush/wakepush/loadtest/analysis"
)

// Plots writes latency.png (p50/p99 per second), throughput.png (sent/accepted per second)
// and latency-cdf.png (e2e leading edge and IQ ack) into dir and returns the file names.
func Plots(dir string, series []analysis.Bucket, ack, e2eLeading []time.Duration) ([]string, error) {
	var names []string
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

	lat := plot.New()
	lat.Title.Text = "Latency per second of the run (e2e: leading-edge and urgent events)"
	lat.X.Label.Text = "second"
	lat.Y.Label.Text = "ms"
	p50, p99, ackP99 := make(plotter.XYs, len(series)), make(plotter.XYs, len(series)), make(plotter.XYs, len(series))
	for i, b := range series {
		p50[i] = plotter.XY{X: float64(b.Second), Y: msOf(b.E2EP50)}
		p99[i] = plotter.XY{X: float64(b.Second), Y: msOf(b.E2EP99)}
		ackP99[i] = plotter.XY{X: float64(b.Second), Y: msOf(b.IQP99)}
	}
	if err := addLines(lat, "e2e leading p50", p50, color.RGBA{B: 200, A: 255}, "e2e leading p99", p99, color.RGBA{R: 200, A: 255},
		"ack p99", ackP99, color.RGBA{G: 150, A: 255}); err != nil {
		return nil, err
	}
	if err := save(lat, dir, "latency.png", &names); err != nil {
		return nil, err
	}

	tp := plot.New()
	tp.Title.Text = "Throughput"
	tp.X.Label.Text = "second"
	tp.Y.Label.Text = "publishes/s"
	sent, acc, errs := make(plotter.XYs, len(series)), make(plotter.XYs, len(series)), make(plotter.XYs, len(series))
	for i, b := range series {
		sent[i] = plotter.XY{X: float64(b.Second), Y: float64(b.Sent)}
		acc[i] = plotter.XY{X: float64(b.Second), Y: float64(b.Accepted)}
		errs[i] = plotter.XY{X: float64(b.Second), Y: float64(b.Errors)}
	}
	if err := addLines(tp, "sent", sent, color.RGBA{B: 200, A: 255}, "accepted", acc, color.RGBA{G: 150, A: 255},
		"errors", errs, color.RGBA{R: 200, A: 255}); err != nil {
		return nil, err
	}
	if err := save(tp, dir, "throughput.png", &names); err != nil {
		return nil, err
	}

	cdf := plot.New()
	cdf.Title.Text = "Latency CDF"
	cdf.X.Label.Text = "ms (log)"
	cdf.Y.Label.Text = "fraction ≤ x"
	cdf.X.Scale = plot.LogScale{}
	cdf.X.Tick.Marker = plot.LogTicks{Prec: -1}
	if err := addLines(cdf, "e2e leading edge", cdfXY(e2eLeading), color.RGBA{R: 200, A: 255},
		"IQ ack", cdfXY(ack), color.RGBA{B: 200, A: 255}); err != nil {
		return nil, err
	}
	if err := save(cdf, dir, "latency-cdf.png", &names); err != nil {
		return nil, err
	}
	return names, nil
}

// cdfXY samples the empirical CDF at ≤ 500 points; latencies are clamped to ≥ 0.01 ms for the
// log axis.
func cdfXY(samples []time.Duration) plotter.XYs {
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return plotter.XYs{{X: 0.01, Y: 0}}
	}
	step := max(1, n/500)
	var out plotter.XYs
	for i := 0; i < n; i += step {
		out = append(out, plotter.XY{X: max(float64(s[i])/1e6, 0.01), Y: float64(i+1) / float64(n)})
	}
	out = append(out, plotter.XY{X: max(float64(s[n-1])/1e6, 0.01), Y: 1})
	return out
}

func addLines(p *plot.Plot, args ...any) error {
	for i := 0; i+2 < len(args); i += 3 {
		xys := args[i+1].(plotter.XYs)
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("plot %s: %w", args[i], err)
		}
		l.Color = args[i+2].(color.RGBA)
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(args[i].(string), l)
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return nil
}

func save(p *plot.Plot, dir, name string, names *[]string) error {
	if err := p.Save(8*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	*names = append(*names, name)
	return nil
}
