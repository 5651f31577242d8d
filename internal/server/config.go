package server

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/diskspace"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"go.opentelemetry.io/otel/trace"
)

// DefaultMetricsListen is serve's --metrics-listen: loopback, next to the
// API's 9009.
const DefaultMetricsListen = "127.0.0.1:9109"

// DefaultURLListen is serve's --url-listen: the function URL listener.
const DefaultURLListen = "127.0.0.1:9010"

// DefaultMaxUnauthConns bounds the API connections that have not yet
// completed an authenticated request.
const DefaultMaxUnauthConns = 256

// Config is every setting of a server, with defaults in one place.
type Config struct {
	Listen       string         // API listener, default 127.0.0.1:9009
	DataDir      string         // default ./.lambdaplane
	NATSURL      string         // external NATS; "" = embedded
	Region       string         // default us-east-1
	Prefix       string         // kernel object prefix, default "lp"
	PoolSize     int            // pre-built network namespaces, default 8
	InitPoolSize int            // pre-started sandbox init processes, default sandbox.DefaultPoolSize
	RefillDelay  time.Duration  // both pools refill once takes stopped this long; 0 = each pool's default (100 ms), <0 = at once
	ServiceCIDR  netip.Prefix   // environments' addresses, default 100.64.0.0/16
	UplinkNetns  string         // "" = host; else a netns path standing in for the internet
	UplinkNet    netip.Prefix   // uplink link net, default 169.254.255.0/30
	EgressAllow  []netip.Prefix // private destinations non-VPC functions may reach
	InitPath     string         // lambdaplane-init binary; default next to the executable
	IdleTimeout  time.Duration  // warm environment reaping, default 5m
	AccountLimit int            // account concurrency, default 1000
	AsyncAckWait time.Duration  // async redelivery after a crash, default 30s
	AsyncBackoff []time.Duration
	RuntimesFile string // extra runtime table entries (JSON)
	SandboxUID   int    // the functions' uid and gid inside their user namespaces, default 993
	// SandboxUIDBase is the first of the 65,536 host uids the server maps
	// its environments' SandboxUID to (one per live environment); a
	// multiple of 65,536. 0 claims a block no other server on the host holds.
	SandboxUIDBase int
	LogLevel       string
	OTLPEndpoint   string // export invocation traces with OTLP/HTTP (host:port or URL); "" = off

	// AcceptDataLoss serves a store whose start-up check found lost data
	// (logging what was lost) instead of refusing to start.
	AcceptDataLoss bool

	// StoreSyncInterval, when positive, lets the embedded store sync to
	// disk in the background this often instead of before every
	// acknowledgement (store.Options.SyncInterval): for benchmarks that
	// measure what the syncs cost; 0, the default, syncs every write.
	StoreSyncInterval time.Duration

	// Logs: what is kept of each function and account (zero fields:
	// logs.DefaultFunctionBytes, DefaultAccountBytes, DefaultFunctionMsgs),
	// and each environment's output rate (zero fields: logs.DefaultRateBytes,
	// DefaultBurstBytes; Rate < 0: no bound).
	LogQuota logs.Quota
	LogRate  logs.RateLimit
	// LogFlushDelay: how long a function's log records are collected
	// before they are stored (0: logs.DefaultFlushDelay).
	LogFlushDelay time.Duration

	// EnvMemoryBudget bounds the memory of the execution environments
	// (default DefaultEnvMemoryPercent of MemTotal): past it the least
	// recently used idle ones are destroyed.
	EnvMemoryBudget MemoryBudget
	// WarmHeadroom: environments kept beyond the last minute's peak
	// concurrency, as a fraction of it (0 = 0.2; < 0 = keep idle ones until
	// IdleTimeout or the budget).
	WarmHeadroom float64

	// AutoServiceCIDR makes the server pick ServiceCIDR itself: the first
	// /20 of 100.64.0.0/10 outside 100.64.0.0/16 that no other server on
	// the host uses (serve --service-cidr auto).
	AutoServiceCIDR bool

	// MinFreeDisk is the free space kept on the data directory's
	// filesystem: uploads (CreateFunction, UpdateFunctionCode,
	// PublishLayerVersion) that would leave less are refused with
	// CodeStorageExceededException. Zero: 10 % of the filesystem, at most
	// 512 MiB (serve --min-free-disk).
	MinFreeDisk diskspace.Watermark

	// MetricsListen is the Prometheus /metrics listener, apart from the
	// API; "" or "off" = none (serve's --metrics-listen defaults to
	// DefaultMetricsListen).
	MetricsListen string

	// URLListen is the function URL listener: requests to
	// http://<url-id>.lambda-url.<region>.localhost:<port>/ are routed by
	// Host; "" or "off" = none (serve's --url-listen defaults to
	// DefaultURLListen).
	URLListen string

	// API listener bounds: the request headers must arrive within
	// ReadHeaderTimeout (default 10s) and a body within ReadTimeout
	// (default 1m) plus its length at 128 KB/s; a keep-alive connection
	// idles at most IdleConnTimeout (default 2m); at most MaxUnauthConns
	// connections (default 256, <0 = no limit) may be open that have not
	// yet completed an authenticated request.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleConnTimeout   time.Duration
	MaxUnauthConns    int

	// CodeURLTTL is how long the presigned Code.Location / Content.Location
	// URLs are valid (default 10 minutes, as on Lambda).
	CodeURLTTL time.Duration

	// VPC functions.
	VpcMode        string        // "hyperplane" (default) or "per-env-eni" (the pre-2019 model)
	VpcIdleTimeout time.Duration // VPC functions idle this long become Inactive (default 14 days)
	ENIMaxConns    int           // simultaneous connections per Hyperplane ENI (default 65,000)
	ENIsPerVPC     int           // network interface quota per VPC (default 250)
	ENIsPerAccount int           // network interface quota per account (default 5,000)
	ENICreateRate  float64       // ENI creations per second (default 10)

	// RepairInterval is how often the kernel (service router, pool, VPC
	// routers, interfaces) is compared with what was applied and repaired;
	// 0 = datapath.DefaultRepairInterval (3s), <0 = never. A namespace of
	// ours removed from /run/netns starts a pass at once.
	RepairInterval time.Duration

	// TracerProvider, when set, receives the invocation traces instead of
	// an OTLP exporter (tests use an in-memory exporter).
	TracerProvider trace.TracerProvider

	// Cluster (serve --host-id; CLUSTER.md). HostID names this host in
	// every invoke response (X-Lambdaplane-Host); default: the machine's
	// host name. Clustered makes the server a member of a cluster: with
	// ClusterListen its embedded store is a voting member routing to
	// ClusterPeers; with NATSURL it joins through that server.
	HostID              string
	Clustered           bool
	ClusterListen       string   // NATS route listener, host:port
	ClusterPeers        []string // the other voting servers' route addresses
	ClusterClientListen string   // the embedded server's client listener (default 127.0.0.1:0)
	Underlay            string   // the address other hosts reach this one at (default: --listen's host)
	HostCapacity        int      // invocations run at once before spilling to the next host (0 = no bound)
	StoreReplicas       int      // replicas of every bucket and stream (0 = min(3, voting servers))
}

// Defaults fills unset fields.
func (c *Config) Defaults() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9009"
	}
	if c.MetricsListen == "off" {
		c.MetricsListen = ""
	}
	if c.URLListen == "off" {
		c.URLListen = ""
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = time.Minute
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = 2 * time.Minute
	}
	if c.MaxUnauthConns == 0 {
		c.MaxUnauthConns = DefaultMaxUnauthConns
	}
	if c.DataDir == "" {
		c.DataDir = ".lambdaplane"
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return err
	}
	c.DataDir = abs
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.HostID == "" {
		c.HostID = defaultHostID()
	}
	if c.Clustered {
		if err := cluster.ValidID(c.HostID); err != nil {
			return err
		}
		if c.ClusterListen == "" && c.NATSURL == "" {
			return fmt.Errorf("--host-id %s: a cluster member needs --cluster-listen ADDR (with --cluster-peers) or --nats-url URL", c.HostID)
		}
		if c.ClusterListen != "" && c.NATSURL != "" {
			return errors.New("--cluster-listen and --nats-url exclude each other: a host either runs a voting store server or uses an existing one")
		}
		if c.ClusterListen != "" && len(c.ClusterPeers) == 0 {
			return fmt.Errorf("--cluster-listen %s needs --cluster-peers (the other voting hosts' --cluster-listen addresses, comma separated)", c.ClusterListen)
		}
		if c.Underlay == "" {
			if h, _, err := net.SplitHostPort(c.Listen); err == nil {
				c.Underlay = h
			}
		}
	}
	if c.Prefix == "" {
		c.Prefix = "lp"
		if c.Clustered {
			c.Prefix = PrefixFor(c.HostID)
		}
	}
	if len(c.Prefix) > 5 {
		return fmt.Errorf("--prefix %q is too long: at most 5 characters (kernel link names are limited to 15)", c.Prefix)
	}
	if c.PoolSize == 0 {
		c.PoolSize = 8
	}
	if !c.ServiceCIDR.IsValid() {
		c.ServiceCIDR = netip.MustParsePrefix("100.64.0.0/16")
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	c.EnvMemoryBudget = c.EnvMemoryBudget.orDefault()
	if c.AccountLimit == 0 {
		c.AccountLimit = 1000
	}
	if c.AsyncAckWait == 0 {
		c.AsyncAckWait = 30 * time.Second
	}
	if c.InitPath == "" {
		exe, err := os.Executable()
		if err == nil {
			c.InitPath = filepath.Join(filepath.Dir(exe), "lambdaplane-init")
		}
	}
	if _, err := os.Stat(c.InitPath); err != nil {
		return fmt.Errorf("sandbox init binary not found at %s: build it (make build) or pass --init-path", c.InitPath)
	}
	if c.SandboxUID == 0 {
		c.SandboxUID = 993
	}
	if err := c.LogQuota.Defaults(); err != nil {
		return err
	}
	if err := c.LogRate.Defaults(); err != nil {
		return err
	}
	return nil
}

// PrefixFor is a host's default kernel object prefix: "lp" and its id when
// that fits in 5 characters (h1 -> lph1), else "l" and 4 hex digits of a
// hash of the id.
func PrefixFor(hostID string) string {
	if len(hostID) <= 3 && !strings.Contains(hostID, "-") {
		return "lp" + hostID
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(hostID))
	return fmt.Sprintf("l%04x", h.Sum32()&0xffff)
}

// defaultHostID is the machine's host name, made a valid host id.
func defaultHostID() string {
	n, err := os.Hostname()
	if err != nil || n == "" {
		return "localhost"
	}
	n = strings.ToLower(n)
	if i := strings.IndexByte(n, '.'); i > 0 {
		n = n[:i]
	}
	return n
}
