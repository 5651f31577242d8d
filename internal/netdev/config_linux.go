package netdev

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
	"time"
)

// Config configures a Router. The zero value of each field selects its
// default (see DefaultConfig).
type Config struct {
	// Prefix names every kernel object: netns <prefix>-svc and
	// <prefix>-e<N>, host link <prefix>-up, nft tables ip <prefix> (in the
	// service router) and ip <prefix>-host. 1-12 characters [a-z0-9],
	// starting with a letter. Default "lp".
	Prefix string
	// ServiceCIDR is where environments' /32s come from. Default 100.64.0.0/16.
	ServiceCIDR netip.Prefix
	// UplinkNetns is where the outside end of the uplink lives: "" is the
	// host's root namespace (then IPv4 forwarding is enabled there and a
	// host nft table masquerades the uplink net and keeps environments away
	// from host services); otherwise a namespace path such as /run/netns/foo.
	UplinkNetns string
	// UnderlayNetns is where this host's underlay address lives (a path;
	// "" is the process's own namespace): VPC tunnels' UDP sockets are
	// opened there (see tunnel_linux.go).
	UnderlayNetns string
	// UplinkNet is the uplink's link net; the service router takes its first
	// address, the outside end the second. Default 169.254.255.0/30.
	UplinkNet netip.Prefix
	// EgressAllow are destinations environments may reach even if they are
	// in the blocked ranges.
	EgressAllow []netip.Prefix
	// PoolSize is how many ready environment namespaces are kept. 0 means
	// the default (8); a negative value disables pre-building.
	PoolSize int
	// RefillDelay is how long the pool refill waits for takes to stop
	// before it builds (at most 10× that after the first take): building
	// namespaces while the cold starts that took them are still running
	// slows those starts down. A pool down to a quarter of its size is
	// refilled at once. 0 = DefaultRefillDelay, negative = none.
	RefillDelay time.Duration
	Logger      *slog.Logger
	// OnRepair, if set, is called for every kernel object a repair pass
	// (Router.Repair, VPCs.Verify, VPCs.CheckInterface) found missing or
	// different from what was applied; kind is one of RepairKinds. Each
	// repair is also logged. It must not block.
	OnRepair func(kind RepairKind, object string)
}

// DefaultRefillDelay is the default Config.RefillDelay (package sandbox's
// init pool has the same default; serve passes one value to both).
const DefaultRefillDelay = 100 * time.Millisecond

// Fixed addressing inside the service network.
var (
	// GatewayAddr is the service router's address on every environment link.
	GatewayAddr = netip.MustParseAddr("169.254.0.1")
)

const (
	// UplinkName is the service router's end of the uplink.
	UplinkName = "uplink"
	// EnvIfName is the environment's end of its veth.
	EnvIfName      = "eth0"
	netnsRunDir    = "/run/netns"
	defaultPool    = 8
	maxPrefixLen   = 12 // "<prefix>-up" must fit IFNAMSIZ-1
	defaultPrefix  = "lp"
	defaultSvcCIDR = "100.64.0.0/16"
	defaultUplink  = "169.254.255.0/30"
)

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Prefix:      defaultPrefix,
		ServiceCIDR: netip.MustParsePrefix(defaultSvcCIDR),
		UplinkNet:   netip.MustParsePrefix(defaultUplink),
		PoolSize:    defaultPool,
		RefillDelay: DefaultRefillDelay,
	}
}

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("netdev: invalid config")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
}

// withDefaults fills defaults and validates.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if !c.ServiceCIDR.IsValid() {
		c.ServiceCIDR = d.ServiceCIDR
	}
	if !c.UplinkNet.IsValid() {
		c.UplinkNet = d.UplinkNet
	}
	if c.PoolSize == 0 {
		c.PoolSize = d.PoolSize
	}
	if c.PoolSize < 0 {
		c.PoolSize = 0
	}
	if c.RefillDelay == 0 {
		c.RefillDelay = d.RefillDelay
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Prefix) > maxPrefixLen || !prefixRE.MatchString(c.Prefix) {
		return c, invalid("prefix %q: use 1-%d characters [a-z0-9] starting with a letter", c.Prefix, maxPrefixLen)
	}
	if !c.ServiceCIDR.Addr().Is4() || c.ServiceCIDR.Bits() < 8 || c.ServiceCIDR.Bits() > 30 {
		return c, invalid("service CIDR %v: use an IPv4 prefix between /8 and /30, e.g. 100.64.0.0/16", c.ServiceCIDR)
	}
	c.ServiceCIDR = c.ServiceCIDR.Masked()
	if !c.UplinkNet.Addr().Is4() || c.UplinkNet.Bits() > 30 {
		return c, invalid("uplink net %v: use an IPv4 prefix of /30 or shorter, e.g. 169.254.255.0/30", c.UplinkNet)
	}
	c.UplinkNet = c.UplinkNet.Masked()
	if c.ServiceCIDR.Overlaps(c.UplinkNet) || c.ServiceCIDR.Contains(GatewayAddr) || c.UplinkNet.Contains(GatewayAddr) {
		return c, invalid("service CIDR %v, uplink net %v and gateway %v must not overlap", c.ServiceCIDR, c.UplinkNet, GatewayAddr)
	}
	if c.UplinkNetns != "" && !filepath.IsAbs(c.UplinkNetns) {
		return c, invalid("uplink netns %q: give an absolute path such as /run/netns/NAME, or empty for the host", c.UplinkNetns)
	}
	allow := make([]netip.Prefix, 0, len(c.EgressAllow))
	for _, p := range c.EgressAllow {
		if !p.IsValid() || !p.Addr().Is4() {
			return c, invalid("egress allow prefix %v: only IPv4 prefixes are supported", p)
		}
		allow = append(allow, p.Masked())
	}
	c.EgressAllow = allow
	return c, nil
}

// Names derived from the prefix.
func svcName(prefix string) string       { return prefix + "-svc" }
func hostLinkName(prefix string) string  { return prefix + "-up" }
func hostTableName(prefix string) string { return prefix + "-host" }
func envName(prefix string, id uint64) string {
	return fmt.Sprintf("%s-e%d", prefix, id)
}
func envLinkName(id uint64) string { return fmt.Sprintf("e%d", id) } // lives in svc only

// uplinkAddrs returns the service router's and the outside end's addresses.
func uplinkAddrs(n netip.Prefix) (svc, outside netip.Prefix) {
	a := n.Masked().Addr()
	s := a.Next()
	return netip.PrefixFrom(s, n.Bits()), netip.PrefixFrom(s.Next(), n.Bits())
}

// hostNetnsPath is the host's network namespace: the one this process was
// started in (serve treats it as its host; hosts of a cluster tested on one
// machine are each started in a namespace of their own with nsenter --net),
// never pid 1's. thread-self, not self: only threads locked to a goroutine
// are ever switched, and a locked thread runs nothing but its goroutine, so
// the thread of the calling (unlocked) goroutine is in the process's
// namespace, while the main thread (self) might momentarily be a switched
// one. Callers evaluate it outside any inNetns callback.
func hostNetnsPath() string {
	return "/proc/thread-self/ns/net"
}
