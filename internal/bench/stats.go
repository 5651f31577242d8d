package bench

import (
	"io"
	"math"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Quantile returns the q-quantile (nearest rank) of xs; NaN when empty.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Mean of xs; NaN when empty.
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var t float64
	for _, x := range xs {
		t += x
	}
	return t / float64(len(xs))
}

func msOf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// CounterSum adds the counters (or gauges) of family name whose labels
// include match.
func CounterSum(mf map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	f := mf[name]
	if f == nil {
		return 0
	}
	var t float64
	for _, m := range f.Metric {
		if !labelsMatch(m, match) {
			continue
		}
		switch {
		case m.Counter != nil:
			t += m.Counter.GetValue()
		case m.Gauge != nil:
			t += m.Gauge.GetValue()
		case m.Untyped != nil:
			t += m.Untyped.GetValue()
		}
	}
	return t
}

// HistogramSums returns, per value of label, the sum and count of the
// histograms of family name.
func HistogramSums(mf map[string]*dto.MetricFamily, name, label string) map[string][2]float64 {
	out := map[string][2]float64{}
	f := mf[name]
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		k := ""
		for _, lp := range m.Label {
			if lp.GetName() == label {
				k = lp.GetValue()
			}
		}
		v := out[k]
		v[0] += h.GetSampleSum()
		v[1] += float64(h.GetSampleCount())
		out[k] = v
	}
	return out
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, want := range match {
		found := false
		for _, lp := range m.Label {
			if lp.GetName() == k && lp.GetValue() == want {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
