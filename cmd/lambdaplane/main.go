// Command lambdaplane is the server and its client tools. It only parses
// flags and calls into internal packages.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/client"
	"github.com/lambdaplane/lambdaplane/internal/diskspace"
	"github.com/lambdaplane/lambdaplane/internal/instance"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/sandbox"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

const usage = `lambdaplane — a self-hosted AWS Lambda API with real VPC networking

Usage:
  lambdaplane serve [flags]              start the server (embedded store)
  lambdaplane logs NAME [--follow]       print a function's logs
  lambdaplane instance run --subnet-id ID [--security-group-ids A,B] [--private-ip IP] -- CMD ARGS...
                                         run CMD as an instance with its own network interface
  lambdaplane accounts create NAME       add a tenant account with its own keys
  lambdaplane accounts list              list accounts
  lambdaplane cluster status            hosts of a cluster: alive or dead, leader, environments, store replicas
  lambdaplane backup DIR                 snapshot every stream of the running server into DIR
  lambdaplane restore DIR --data NEW     rebuild an empty data directory from a backup
  lambdaplane bench [--quick]            measure cold starts, warm invokes and memory; write RESULTS.md
  lambdaplane version

Run "lambdaplane COMMAND --help" for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "logs":
		err = logsCmd(os.Args[2:])
	case "cluster":
		err = clusterCmd(os.Args[2:])
	case "accounts":
		err = accountsCmd(os.Args[2:])
	case "backup":
		err = backupCmd(os.Args[2:])
	case "restore":
		err = restoreCmd(os.Args[2:])
	case "bench":
		err = benchCmd(os.Args[2:])
	case "instance":
		var code int
		code, err = instanceCmd(os.Args[2:])
		if err == nil {
			os.Exit(code)
		}
	case "version":
		fmt.Println("lambdaplane", version())
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "lambdaplane:", err)
		os.Exit(1)
	}
}

func version() string { return "0.1.0" }

type prefixList []netip.Prefix

func (p *prefixList) String() string { return fmt.Sprint(*p) }
func (p *prefixList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		pr, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("%q is not a CIDR such as 10.9.0.0/16", part)
		}
		*p = append(*p, pr)
	}
	return nil
}

type durationList []time.Duration

func (d *durationList) String() string { return fmt.Sprint(*d) }
func (d *durationList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		v, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		*d = append(*d, v)
	}
	return nil
}

// durationFlag is a time.Duration flag that also accepts days ("14d").
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}
func (f durationFlag) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 14d or 90s", s)
		}
		*f.d = time.Duration(days * 24 * float64(time.Hour))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 14d or 90s", s)
	}
	*f.d = v
	return nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c server.Config
	var allow prefixList
	var backoff durationList
	var svc, uplink, uplinkNet string
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:9009", "API listen address")
	fs.StringVar(&c.MetricsListen, "metrics-listen", server.DefaultMetricsListen, "Prometheus /metrics listen address, apart from the API (off = none)")
	fs.StringVar(&c.URLListen, "url-listen", server.DefaultURLListen, "function URL listen address: http://<url-id>.lambda-url.<region>.localhost:<port>/ (off = none)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", time.Minute, "a request body must arrive within this plus its length at 128 KB/s (request headers: 10s)")
	fs.IntVar(&c.MaxUnauthConns, "max-unauthenticated-connections", server.DefaultMaxUnauthConns, "API connections that have not yet completed an authenticated request; more wait to be accepted (-1 = no limit)")
	fs.StringVar(&c.DataDir, "data", ".lambdaplane", "data directory (store, credentials, code)")
	fs.Func("min-free-disk", "free space to keep on the data directory's filesystem: uploads (create-function, update-function-code, publish-layer-version) that would leave less are refused with CodeStorageExceededException; bytes (256MiB, 1G), a percentage (5%), 0 = none, or auto (default: 10% of the filesystem, at most 512MiB)", func(v string) error {
		w, err := diskspace.Parse(v)
		c.MinFreeDisk = w
		return err
	})
	fs.StringVar(&c.NATSURL, "nats-url", "", "use an external NATS server with JetStream instead of the embedded one")
	fs.BoolVar(&c.AcceptDataLoss, "accept-data-loss", false, "start even though the store lost data (the start-up check names what; it is logged), serving what is left; without it such a start is refused")
	fs.StringVar(&c.Region, "region", "us-east-1", "region in ARNs and the credentials profile")
	fs.StringVar(&c.Prefix, "prefix", "lp", "prefix of every kernel object (namespaces, links, nft tables, cgroups); one running server per prefix on a host")
	fs.IntVar(&c.PoolSize, "pool-size", 8, "pre-built network namespaces kept ready (raise it to the largest burst of cold starts you expect; ~0.4 MB kernel memory each)")
	fs.IntVar(&c.InitPoolSize, "init-pool-size", sandbox.DefaultPoolSize, "sandbox init processes kept started (raise it with --pool-size for bursts; refills run at low CPU priority)")
	fs.IntVar(&c.SandboxUIDBase, "sandbox-uid-base", 0, "first of the 65,536 host uids functions' uid 993 maps to, one per live environment (a multiple of 65536; 0 = a block no other server on this host holds, from 1073741824)")
	fs.DurationVar(&c.RefillDelay, "pool-refill-delay", sandbox.DefaultRefillDelay, "refill the pools once cold starts stopped taking from them for this long (at most 10x that), so refills do not slow the starts down; negative = at once")
	fs.StringVar(&svc, "service-cidr", "100.64.0.0/16", "addresses of execution environments, not overlapping another running server's (auto = the first free /20 of 100.64.0.0/10 outside 100.64.0.0/16)")
	fs.StringVar(&uplink, "uplink", "host", `where non-VPC functions reach "the internet": host, or netns:/run/netns/NAME`)
	fs.StringVar(&uplinkNet, "uplink-net", "169.254.255.0/30", "link net between the service router and the uplink")
	fs.Var(&allow, "egress-allow", "private CIDRs non-VPC functions may reach (comma separated; default none)")
	fs.StringVar(&c.InitPath, "init-path", "", "lambdaplane-init binary (default: next to this executable)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 5*time.Minute, "reap warm environments idle this long")
	fs.Var(&c.EnvMemoryBudget, "env-memory-budget", "memory the execution environments may hold, each counted at its cgroup's high-water mark (Max Memory Used) plus 1 MiB: a share of MemTotal (50%), a size (8GiB) or off; past it the least recently used idle ones are destroyed (default 50%)")
	fs.Float64Var(&c.WarmHeadroom, "warm-headroom", 0.2, "environments kept beyond the last minute's peak concurrency, as a fraction of it; surplus idle ones go least recently used first (a function's last one stays until --idle-timeout); -1 = keep idle ones until --idle-timeout")
	fs.IntVar(&c.AccountLimit, "account-concurrency", 1000, "concurrent executions per account")
	fs.DurationVar(&c.AsyncAckWait, "async-redelivery", 30*time.Second, "re-run an Event invocation whose server died after this long")
	fs.Var(&backoff, "async-retry-backoff", "delays before the two retries of a failed Event invocation (default 1m,2m)")
	fs.StringVar(&c.RuntimesFile, "runtimes", "", "JSON file with extra runtime table entries")
	fs.StringVar(&c.VpcMode, "vpc-mode", "hyperplane", "hyperplane (shared ENIs, created with the function) or per-env-eni (the pre-2019 model: one ENI per environment, created at cold start)")
	fs.Var(durationFlag{&c.VpcIdleTimeout}, "vpc-idle-timeout", "a VPC function not invoked this long becomes Inactive and its ENI shares are released (default 14d; accepts d for days)")
	fs.IntVar(&c.ENIMaxConns, "eni-max-connections", 65000, "simultaneous connections per Hyperplane ENI before another is added")
	fs.IntVar(&c.ENIsPerVPC, "eni-quota-per-vpc", 250, "network interfaces per VPC")
	fs.IntVar(&c.ENIsPerAccount, "eni-quota-per-account", 5000, "network interfaces per account")
	fs.Float64Var(&c.ENICreateRate, "eni-create-rate", 10, "network interface creations per second")
	fs.DurationVar(&c.RepairInterval, "repair-interval", 3*time.Second, "compare the kernel (service router, pool, VPC routers, interfaces) with what was applied and repair it this often (-1s = never; a removed namespace of ours starts a pass at once)")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", "", "export invocation traces with OTLP/HTTP to HOST:PORT or URL (default off)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	var peers string
	fs.StringVar(&c.HostID, "host-id", "", "this host's id in a cluster (e.g. h1); makes the server a cluster member (with --cluster-listen or --nats-url); the default --prefix becomes lp+ID (default: the host name, named in X-Lambdaplane-Host only)")
	fs.StringVar(&c.ClusterListen, "cluster-listen", "", "run the embedded store as a voting member of a cluster: NATS route listener ADDR:PORT (e.g. 10.20.0.1:6222)")
	fs.StringVar(&peers, "cluster-peers", "", "the other voting hosts' --cluster-listen addresses, comma separated")
	fs.StringVar(&c.ClusterClientListen, "cluster-client-listen", "", "the embedded store's NATS client listener (default 127.0.0.1:0); a reachable address lets more hosts join with --nats-url")
	fs.StringVar(&c.Underlay, "underlay", "", "the address other hosts reach this one at (default: --listen's host)")
	fs.IntVar(&c.HostCapacity, "host-capacity", 0, "invocations this host runs at once before it passes more to the next host of the function's ranking (0 = no bound)")
	fs.IntVar(&c.StoreReplicas, "store-replicas", 0, "replicas of every bucket and stream (default: min(3, voting servers); with --nats-url those of the existing buckets, else 1)")
	fs.Int64Var(&c.LogQuota.FunctionBytes, "log-quota-function-bytes", logs.DefaultFunctionBytes, "keep each function's newest log records up to this many bytes")
	fs.Int64Var(&c.LogQuota.AccountBytes, "log-quota-account-bytes", logs.DefaultAccountBytes, "keep at most this many bytes of logs per account (its largest functions are trimmed first)")
	fs.Int64Var(&c.LogRate.Rate, "log-rate-bytes", logs.DefaultRateBytes, "bytes per second an execution environment may write to stdout/stderr, sustained; more is dropped with a marker line (-1 = no bound)")
	fs.Int64Var(&c.LogRate.Burst, "log-rate-burst-bytes", logs.DefaultBurstBytes, "bytes an execution environment may write at once above --log-rate-bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.HostID != "" {
		c.Clustered = true
		if !set["prefix"] {
			c.Prefix = "" // derived from --host-id
		}
	}
	for _, p := range strings.Split(peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.ClusterPeers = append(c.ClusterPeers, p)
		}
	}
	if (c.ClusterListen != "" || len(c.ClusterPeers) > 0) && c.HostID == "" {
		return errors.New("--cluster-listen/--cluster-peers need --host-id ID (each host's own, e.g. h1)")
	}
	var err error
	if svc == "auto" {
		c.AutoServiceCIDR = true
	} else if c.ServiceCIDR, err = netip.ParsePrefix(svc); err != nil {
		return fmt.Errorf("--service-cidr %q: %w", svc, err)
	}
	if c.UplinkNet, err = netip.ParsePrefix(uplinkNet); err != nil {
		return fmt.Errorf("--uplink-net %q: %w", uplinkNet, err)
	}
	switch {
	case uplink == "host" || uplink == "":
	case strings.HasPrefix(uplink, "netns:"):
		c.UplinkNetns = strings.TrimPrefix(uplink, "netns:")
	default:
		return fmt.Errorf("--uplink %q: use host or netns:/run/netns/NAME", uplink)
	}
	c.EgressAllow = allow
	c.AsyncBackoff = backoff
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", c.LogLevel, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := server.Start(ctx, c, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nlambdaplane is serving on %s (account %s)\nTry:\n  AWS_SHARED_CREDENTIALS_FILE=%s/credentials aws --profile lambdaplane --region %s --endpoint-url %s lambda list-functions\n\n",
		s.Endpoint, s.Account.ID, s.Cfg.DataDir, s.Cfg.Region, s.Endpoint)
	<-ctx.Done()
	log.Info("shutting down: tearing down environments and the service network")
	return s.Close()
}

func clientFlags(fs *flag.FlagSet) *client.Options {
	o := &client.Options{}
	fs.StringVar(&o.EndpointURL, "endpoint-url", "", "server endpoint (default: AWS_ENDPOINT_URL, else the local data directory)")
	fs.StringVar(&o.Profile, "profile", "", "credentials profile (default: AWS_PROFILE, else lambdaplane)")
	fs.StringVar(&o.Region, "region", "", "region (default: AWS_REGION, else us-east-1)")
	fs.StringVar(&o.DataDir, "data", ".lambdaplane", "local server data directory")
	return o
}

// parseInterleaved parses flags that may come before or after positional
// arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func logsCmd(args []string) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: lambdaplane logs NAME [--follow] [--tail N]\n\nPrints the function's log (START/END/REPORT lines and its output).")
		fs.PrintDefaults()
	}
	follow := fs.Bool("follow", false, "keep printing new log lines")
	tail := fs.Int("tail", 0, "print only the last N invocations' logs")
	o := clientFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("logs needs exactly one function name")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := client.Resolve(ctx, *o)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *follow {
		q.Set("follow", "1")
	}
	if *tail > 0 {
		q.Set("tail", fmt.Sprint(*tail))
	}
	resp, err := c.Do(ctx, "lambda", http.MethodGet, "/_lambdaplane/logs/"+url.PathEscape(pos[0])+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return client.ReadError(resp)
	}
	_, err = io.Copy(os.Stdout, bufio.NewReader(resp.Body))
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func accountsCmd(args []string) error {
	fs := flag.NewFlagSet("accounts", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: lambdaplane accounts create NAME [--write-profile PROFILE]\n       lambdaplane accounts list\n\nRuns on the server host: it uses the operator token in the data directory.")
		fs.PrintDefaults()
	}
	dataDir := fs.String("data", ".lambdaplane", "server data directory")
	endpoint := fs.String("endpoint-url", "", "server endpoint (default: from the data directory)")
	writeProfile := fs.String("write-profile", "", "append the new account's keys to <data>/credentials under this profile")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return errors.New("accounts needs a subcommand: create or list")
	}
	tok, err := server.ReadAdminToken(*dataDir)
	if err != nil {
		return fmt.Errorf("read operator token: %w (run on the server host, or pass --data)", err)
	}
	ep := *endpoint
	if ep == "" {
		b, err := os.ReadFile(*dataDir + "/endpoint")
		if err != nil {
			return fmt.Errorf("no endpoint: pass --endpoint-url or --data: %w", err)
		}
		ep = strings.TrimSpace(string(b))
	}
	var req *http.Request
	switch pos[0] {
	case "list":
		req, _ = http.NewRequest(http.MethodGet, ep+"/_lambdaplane/accounts", nil)
	case "create":
		if len(pos) != 2 {
			return errors.New("usage: lambdaplane accounts create NAME")
		}
		b, _ := json.Marshal(map[string]string{"Name": pos[1]})
		req, _ = http.NewRequest(http.MethodPost, ep+"/_lambdaplane/accounts", bytes.NewReader(b))
	default:
		return fmt.Errorf("unknown accounts subcommand %q: use create or list", pos[0])
	}
	req.Header.Set("X-Lambdaplane-Admin-Token", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return client.ReadError(resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if pos[0] == "create" && *writeProfile != "" {
		var v server.AccountView
		if err := json.Unmarshal(body, &v); err != nil {
			return err
		}
		f, err := os.OpenFile(*dataDir+"/credentials", os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		fmt.Fprintf(f, "\n[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", *writeProfile, v.AccessKeyID, v.SecretAccessKey)
		f.Close()
		fmt.Fprintf(os.Stderr, "wrote profile %q to %s/credentials\n", *writeProfile, *dataDir)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") == nil {
		body = pretty.Bytes()
	}
	fmt.Println(strings.TrimSpace(string(body)))
	return nil
}

func instanceCmd(args []string) (int, error) {
	if len(args) == 0 || args[0] != "run" {
		return 0, errors.New("usage: lambdaplane instance run --subnet-id ID [--security-group-ids A,B] [--private-ip IP] -- CMD ARGS...")
	}
	fs := flag.NewFlagSet("instance run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: lambdaplane instance run --subnet-id ID [--security-group-ids A,B] [--private-ip IP] -- CMD ARGS...\n\n"+
			"Creates a network interface in the subnet, runs CMD in a network namespace holding only that interface\n"+
			"(its address in $LAMBDAPLANE_INSTANCE_IP), and deletes the interface when CMD exits. Runs as root on the server host.")
		fs.PrintDefaults()
	}
	var o instance.Options
	var groups string
	fs.StringVar(&o.SubnetID, "subnet-id", "", "subnet the instance joins (required)")
	fs.StringVar(&groups, "security-group-ids", "", "security groups, comma separated (default: the VPC's default group)")
	fs.StringVar(&o.PrivateIP, "private-ip", "", "address to take in the subnet (default: the next free one)")
	co := clientFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 0, err
	}
	o.Client = *co
	o.Command = fs.Args()
	for _, g := range strings.Split(groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			o.SecurityGroupIDs = append(o.SecurityGroupIDs, g)
		}
	}
	return instance.Run(context.Background(), o)
}
