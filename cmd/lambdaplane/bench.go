package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/lambdaplane/lambdaplane/internal/bench"
)

// benchCmd parses the flags of `lambdaplane bench` and runs the suite.
func benchCmd(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lambdaplane bench [--quick] [--out DIR] [--scenarios a,b] [--endpoint-url URL]\n\n"+
			"Measures cold starts, cold-start phases, bursts, warm latency and throughput, and memory through the\n"+
			"real API, and writes RESULTS.md, results.json and SVG plots to --out. Without --endpoint-url it starts\n"+
			"its own server in a temporary data directory (as root) and removes everything afterwards.\n"+
			"Scenarios: %s\n\n", strings.Join(bench.Names(), ", "))
		fs.PrintDefaults()
	}
	var o bench.Options
	var scenarios, level, replot, cpuProfile string
	fs.BoolVar(&o.Quick, "quick", false, "small counts, finishes in under 2 minutes (CI)")
	fs.StringVar(&o.OutDir, "out", "bench-results", "directory for RESULTS.md, results.json and the plots")
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios to run (default: all)")
	fs.StringVar(&o.Client.EndpointURL, "endpoint-url", "", "measure this running server instead of starting one")
	fs.StringVar(&o.Client.Profile, "profile", "", "credentials profile for --endpoint-url (default: AWS_PROFILE, else lambdaplane)")
	fs.StringVar(&o.Client.Region, "region", "", "region (default: AWS_REGION, else us-east-1)")
	fs.StringVar(&o.Client.DataDir, "data", ".lambdaplane", "data directory of the server at --endpoint-url (credentials)")
	fs.StringVar(&o.MetricsURL, "metrics-url", "", "with --endpoint-url: the server's /metrics (default: port 9109 of the endpoint's host, serve's --metrics-listen default)")
	fs.StringVar(&o.EgressAddr, "egress-addr", "", "with --endpoint-url: a TCP address the server's functions can reach (egress scenario)")
	fs.IntVar(&o.PoolSize, "pool-size", bench.DefaultPool, "in-process server: ready network namespaces (serve --pool-size)")
	fs.IntVar(&o.InitPoolSize, "init-pool-size", bench.DefaultPool, "in-process server: started init processes (serve --init-pool-size)")
	fs.StringVar(&o.InitPath, "init-path", "", "lambdaplane-init binary (default: next to this executable, else built from the source tree)")
	fs.DurationVar(&o.Timeout, "timeout", 0, "bound on the whole run (default 110s with --quick, 2h otherwise)")
	fs.StringVar(&replot, "replot", "", "only redraw the plots and RESULTS.md of DIR/results.json")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (client and in-process server) to this file")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error (debug also shows the server's log)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if replot != "" {
		return bench.Replot(replot)
	}
	for _, s := range strings.Split(scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: %w", level, err)
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, o)
	if rep != nil {
		fmt.Print(bench.SummaryTable(rep))
		fmt.Printf("\nresults in %s/RESULTS.md\n", o.OutDir)
	}
	return err
}
