package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ReproduceCommand is how RESULTS.md says to reproduce it.
const ReproduceCommand = "sudo go run ./cmd/lambdaplane bench"

func writeReport(dir string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(Markdown(rep, "")), 0o644)
}

// MachineLine describes the machine in one sentence.
func MachineLine(m Machine) string {
	cpu := m.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	return fmt.Sprintf("%d cores (%s), %.1f GiB RAM, %s, %s, %s", m.Cores, cpu, float64(m.MemoryMB)/1024, m.Kernel, m.OS, m.Go)
}

// Markdown renders the report; plots are linked relative to plotDir
// ("" = next to RESULTS.md).
func Markdown(rep *Report, plotDir string) string {
	var b strings.Builder
	mode := "full suite"
	if rep.Quick {
		mode = "quick suite (--quick: small counts, for CI)"
	}
	fmt.Fprintf(&b, "# lambdaplane benchmark results\n\n")
	fmt.Fprintf(&b, "%s, %s, target %s, commit `%s`, took %s.\n\n", rep.Started.Format("2006-01-02 15:04 UTC"), mode, rep.Target, rep.Commit, rep.Finished.Sub(rep.Started).Round(time.Second))
	fmt.Fprintf(&b, "Machine: %s.\n\n", MachineLine(rep.Machine))
	if rep.PoolSize > 0 {
		fmt.Fprintf(&b, "In-process server: %d ready network namespaces and %d started init processes in its pools (`serve --pool-size %d --init-pool-size %d`; serve's defaults are 8 and 2).\n\n", rep.PoolSize, rep.InitPoolSize, rep.PoolSize, rep.InitPoolSize)
	}
	fmt.Fprintf(&b, "Reproduce: `%s` (add `--quick` for the CI suite; `--endpoint-url URL` to measure a running server). Every sample is in `results.json`.\n\n", ReproduceCommand)

	b.WriteString(SummaryTable(rep))
	for _, r := range rep.Results {
		if r.Pending != "" {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n", r.Title)
		if sc, ok := scenarioByName(r.Name); ok && sc.About != "" {
			b.WriteString(sc.About + "\n\n")
		}
		if r.Skipped != "" {
			fmt.Fprintf(&b, "Skipped: %s.\n", r.Skipped)
			continue
		}
		if r.Error != "" {
			fmt.Fprintf(&b, "**Error:** %s\n\n", r.Error)
		}
		if r.Checkpoints {
			b.WriteString(checkpointTable(r))
		} else {
			b.WriteString(distributionTable(r))
		}
		if len(r.Values) > 0 {
			b.WriteString("\n| figure | value |\n|---|---:|\n")
			for _, v := range r.Values {
				fmt.Fprintf(&b, "| %s | %s %s |\n", v.Name, num(v.Value), v.Unit)
			}
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "\n- %s", n)
		}
		if len(r.Notes) > 0 {
			b.WriteString("\n")
		}
		for _, p := range r.Plots {
			fmt.Fprintf(&b, "\n![%s](%s)\n", r.Title, filepath.ToSlash(filepath.Join(plotDir, p)))
		}
	}
	var pending []*Result
	for _, r := range rep.Results {
		if r.Pending != "" {
			pending = append(pending, r)
		}
	}
	if len(pending) > 0 {
		b.WriteString("\n## Pending\n\n")
		for _, r := range pending {
			about := ""
			if sc, ok := scenarioByName(r.Name); ok {
				about = " " + sc.About
			}
			fmt.Fprintf(&b, "- **%s** — pending: %s.%s\n", r.Title, r.Pending, about)
		}
	}
	return b.String()
}

// SummaryTable is the headline figures of a report as one table.
func SummaryTable(rep *Report) string {
	var b strings.Builder
	b.WriteString("| scenario | figure | value |\n|---|---|---:|\n")
	for _, r := range rep.Results {
		switch {
		case r.Pending != "":
			fmt.Fprintf(&b, "| %s | pending: %s | — |\n", r.Title, r.Pending)
			continue
		case r.Skipped != "":
			fmt.Fprintf(&b, "| %s | skipped: %s | — |\n", r.Title, r.Skipped)
			continue
		case r.Error != "":
			fmt.Fprintf(&b, "| %s | error | — |\n", r.Title)
			continue
		}
		switch r.Name {
		case "cold-start":
			for _, s := range r.Series {
				fmt.Fprintf(&b, "| %s | p50 / p90 / p99 (n=%d) | %s / %s / %s ms |\n", r.Title, len(s.Samples), num(Quantile(s.Samples, .5)), num(Quantile(s.Samples, .9)), num(Quantile(s.Samples, .99)))
			}
		case "cold-start-phases":
			var parts []string
			for _, s := range r.Series {
				if isTop(s.Name) {
					parts = append(parts, fmt.Sprintf("%s %s", s.Name, num(Mean(s.Samples))))
				}
			}
			fmt.Fprintf(&b, "| %s | mean ms | %s |\n", r.Title, strings.Join(parts, ", "))
		case "burst":
			for _, s := range r.Series {
				fmt.Fprintf(&b, "| Burst | %s: p50 / p99 | %s / %s ms |\n", s.Name, num(Quantile(s.Samples, .5)), num(Quantile(s.Samples, .99)))
			}
		case "warm", "warm-floor":
			label := "Warm invoke"
			if r.Name == "warm-floor" {
				label = "Warm invoke, no platform (reference)"
			}
			for _, s := range r.Series {
				if s.Name == "latency c=1" {
					fmt.Fprintf(&b, "| %s | latency c=1 p50 / p99 | %s / %s ms |\n", label, num(Quantile(s.Samples, .5)), num(Quantile(s.Samples, .99)))
				}
			}
			for _, v := range r.Values {
				fmt.Fprintf(&b, "| %s | %s | %s %s |\n", label, v.Name, num(v.Value), v.Unit)
			}
		case "mixed-load":
			v := map[string]float64{}
			for _, x := range r.Values {
				v[x.Name] = x.Value
			}
			fmt.Fprintf(&b, "| Mixed load | invoke p50 / p99 / max | %s / %s / %s ms |\n", num(v["invoke p50"]), num(v["invoke p99"]), num(v["invoke max"]))
			fmt.Fprintf(&b, "| Mixed load | environments: peak / load end / 3 s later (peak in flight) | %s / %s / %s (%s) |\n", num(v["peak environments"]), num(v["environments when the load ended"]), num(v["environments 3 s after the load"]), num(v["peak invokes in flight"]))
			fmt.Fprintf(&b, "| Mixed load | cold starts, updates, throughput | %s, %s, %s invokes/s |\n", num(v["cold starts during the load"]), num(v["updates"]), num(v["throughput"]))
		case "egress":
			for _, s := range r.Series {
				fmt.Fprintf(&b, "| %s | %s p50 | %s ms |\n", r.Title, s.Name, num(Quantile(s.Samples, .5)))
			}
		default:
			for _, v := range r.Values {
				fmt.Fprintf(&b, "| %s | %s | %s %s |\n", r.Title, v.Name, num(v.Value), v.Unit)
			}
		}
	}
	return b.String()
}

func distributionTable(r *Result) string {
	var b strings.Builder
	b.WriteString("| series | n | p50 | p90 | p99 | min | max | mean | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Series {
		unit := " " + s.Unit
		fmt.Fprintf(&b, "| %s | %d | %s%s | %s | %s | %s | %s | %s | %d |\n", s.Name, len(s.Samples),
			num(Quantile(s.Samples, .5)), unit, num(Quantile(s.Samples, .9)), num(Quantile(s.Samples, .99)),
			num(Quantile(s.Samples, 0)), num(Quantile(s.Samples, 1)), num(Mean(s.Samples)), s.Errors)
	}
	return b.String()
}

func checkpointTable(r *Result) string {
	var b strings.Builder
	rows := 0
	for i, s := range r.Series {
		fmt.Fprintf(&b, "| %s (%s) ", s.Name, s.Unit)
		if i == 0 {
			rows = len(s.Samples)
		}
	}
	b.WriteString("|\n")
	for range r.Series {
		b.WriteString("|---:")
	}
	b.WriteString("|\n")
	for i := 0; i < rows; i++ {
		for _, s := range r.Series {
			v := math.NaN()
			if i < len(s.Samples) {
				v = s.Samples[i]
			}
			fmt.Fprintf(&b, "| %s ", num(v))
		}
		b.WriteString("|\n")
	}
	return b.String()
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) < 0.1:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func scenarioByName(name string) (Scenario, bool) {
	for _, s := range registry {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Replot redraws the plots and RESULTS.md of a finished run from
// dir/results.json (after a change to how they are drawn).
func Replot(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s/results.json: %w", dir, err)
	}
	for _, r := range rep.Results {
		sc, ok := scenarioByName(r.Name)
		if !ok || r.Pending != "" {
			continue
		}
		plots, err := plotResult(dir, sc, r)
		if err != nil {
			return err
		}
		r.Plots = plots
	}
	return writeReport(dir, &rep)
}
