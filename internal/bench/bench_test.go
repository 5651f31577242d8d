package bench

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test cannot run: CI must run as root")
		}
		t.Skip("needs root")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestQuickSuite runs `lambdaplane bench --quick` in-process and checks that
// every scenario that is not pending produced samples. No timing is asserted.
func TestQuickSuite(t *testing.T) {
	requireRoot(t)
	wd, _ := os.Getwd()
	root := ModuleRoot(wd)
	if root == "" {
		t.Fatal("not inside the lambdaplane module")
	}
	out := t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The suite's other packages run at the same time: more than the 110 s
	// a quick run gives itself on a quiet machine.
	if _, err := Run(ctx, Options{Quick: true, OutDir: out, ModuleRoot: root, Logger: log, Timeout: 4 * time.Minute}); err != nil {
		t.Fatalf("bench: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if rep.Machine.Cores == 0 || rep.Machine.MemoryMB == 0 || rep.Machine.Kernel == "" || rep.Commit == "" {
		t.Errorf("machine/commit not recorded: %+v %q", rep.Machine, rep.Commit)
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Name] = true
		if r.Pending != "" {
			if len(r.Series) != 0 {
				t.Errorf("pending scenario %s has samples", r.Name)
			}
			continue
		}
		if r.Error != "" || r.Skipped != "" {
			t.Errorf("scenario %s: error %q skipped %q", r.Name, r.Error, r.Skipped)
			continue
		}
		if len(r.Series) == 0 {
			t.Errorf("scenario %s has no series", r.Name)
		}
		for _, s := range r.Series {
			if len(s.Samples) == 0 {
				t.Errorf("scenario %s: series %q has no samples", r.Name, s.Name)
			}
		}
		for _, p := range r.Plots {
			if fi, err := os.Stat(filepath.Join(out, p)); err != nil || fi.Size() == 0 {
				t.Errorf("scenario %s: plot %s missing", r.Name, p)
			}
		}
	}
	for _, n := range Names() {
		if !seen[n] {
			t.Errorf("scenario %s missing from results.json", n)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## VPC cold start", "VPC, per-env-eni: vpc_attach phase p50", "ENILimitReachedException refusals", "addresses used, per-env-eni"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for q, want := range map[float64]float64{0: 1, 0.5: 3, 0.9: 5, 1: 5} {
		if got := Quantile(xs, q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if !math.IsNaN(Quantile(nil, .5)) {
		t.Error("quantile of nothing is not NaN")
	}
}

func TestSelectScenarios(t *testing.T) {
	if _, err := selectScenarios([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "cold-start") {
		t.Errorf("unknown scenario: %v (should list the valid ones)", err)
	}
	got, err := selectScenarios([]string{"warm", "cold-start"})
	if err != nil || len(got) != 2 || got[0].Name != "warm" {
		t.Errorf("select: %v %v", got, err)
	}
}

// TestReportRendering renders a synthetic report: tables, pending list,
// and plots drawn by gonum/plot.
func TestReportRendering(t *testing.T) {
	dir := t.TempDir()
	rep := &Report{Started: time.Now(), Finished: time.Now(), Quick: true, Target: "in-process", Commit: "abc", Machine: machineInfo()}
	for _, sc := range registry {
		r := &Result{Name: sc.Name, Title: sc.Title, Pending: sc.Pending}
		if sc.Pending == "" {
			switch sc.Name {
			case "memory":
				r.Checkpoints = true
				r.series("environments", "count", 0).Samples = []float64{1, 2}
				r.series("host memory used (delta)", "MB", 0).Samples = []float64{3, 6}
			case "sharing":
				r.Checkpoints = true
				r.series("functions", "count", 0).Samples = []float64{0, 100}
				r.series("server RSS", "MB", 0).Samples = []float64{50, 52}
			case "vpc-addresses":
				r.Checkpoints = true
				r.series("concurrency", "invokes", 0).Samples = []float64{1, 10}
				r.series("addresses used, shared ENI", "count", 0).Samples = []float64{1, 1}
				r.series("addresses used, per-env-eni", "count", 0).Samples = []float64{1, 10}
			case "vpc-cold-start":
				for _, m := range []string{labelNoVPC, labelShared, labelPerEnv} {
					r.series(m, "ms", 0).Samples = []float64{10, 12, 15}
					for _, p := range []string{"namespace", "vpc_attach", "process", firstResponse} {
						r.series(m+": "+p, "ms", 0).Samples = []float64{1, 2, 3}
					}
				}
			case "cold-start-phases":
				for _, p := range []string{"namespace", "process", "sandbox_cgroup", "sandbox_exec", "runtime_init", firstResponse} {
					r.series(p, "ms", 0).Samples = []float64{1, 2, 3}
				}
			default:
				r.series("a", "ms", 1).Samples = []float64{1, 2, 3}
				r.series("b", "ms", 4).Samples = []float64{2, 3, 4}
				r.value("throughput c=1", 100, "invokes/s")
				r.value("throughput c=4", 300, "invokes/s")
			}
			plots, err := plotResult(dir, sc, r)
			if err != nil {
				t.Fatalf("plot %s: %v", sc.Name, err)
			}
			if len(plots) == 0 {
				t.Errorf("scenario %s drew no plot", sc.Name)
			}
			for _, p := range plots {
				b, err := os.ReadFile(filepath.Join(dir, p))
				if err != nil || !strings.Contains(string(b), "<svg") {
					t.Errorf("plot %s is not an SVG: %v", p, err)
				}
			}
			r.Plots = plots
		}
		rep.Results = append(rep.Results, r)
	}
	rep.Results = append(rep.Results, &Result{Name: "future", Title: "A future scenario", Pending: "needs VPC attachment"})
	md := Markdown(rep, "")
	for _, want := range []string{"| series | n | p50", "pending: needs VPC attachment", "![", ReproduceCommand, "| functions (count) | server RSS (MB) |"} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
}
