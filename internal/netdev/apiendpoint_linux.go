package netdev

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The platform endpoint: functions call the platform's own API (Lambda,
// STS, ...) at an address of the service network. It lives in a namespace
// of its own, <prefix>-api, plumbed like an environment (a veth "api0" in
// the service router, APIAddr on its eth0, default route via
// GatewayAddr); the server serves its API there on
// APIPort (ListenAPI). The service router forwards to it only TCP to that
// port (nft), and the namespace holds nothing but that listener: nothing
// else of the host is reachable through it.
//
// An environment without a VPC reaches it directly (the main table routes
// the address to api0). An attached VPC environment's packets all go to
// its VPC by policy routing, so it reaches the endpoint only the way it
// reaches anything outside its VPC: through a NAT gateway and the VPC's
// internet gateway, whose link is in the service router's main table.
// The address is outside the service CIDR (which VPC routers route back
// over their hyperplane link) and outside any VPC (link-local), so a VPC
// routes it like an internet address.
var (
	// APIAddr is the platform endpoint's address.
	APIAddr = netip.MustParseAddr("169.254.100.1")
	// apiAddrAlt is used when the uplink net holds APIAddr.
	apiAddrAlt = netip.MustParseAddr("169.254.101.1")
)

const (
	apiLinkName = "api0"
	// APIPort is the platform endpoint's TCP port.
	APIPort = 80
)

func apiNetnsName(prefix string) string { return prefix + "-api" }

// apiNet is the endpoint namespace as an environment-shaped link.
func (r *Router) apiNet() *EnvNet {
	name := apiNetnsName(r.cfg.Prefix)
	return &EnvNet{Name: name, Path: filepath.Join(netnsRunDir, name), Addr: r.apiAddr, HostLink: apiLinkName}
}

// APIAddr is the platform endpoint's address on the service network.
func (r *Router) APIAddr() netip.Addr { return r.apiAddr }

// APIEndpoint is the platform endpoint's URL as a function sees it
// (http://<address>, port APIPort).
func (r *Router) APIEndpoint() string {
	return "http://" + net.JoinHostPort(r.apiAddr.String(), strconv.Itoa(APIPort))
}

// APINetnsPath is the endpoint namespace's path.
func (r *Router) APINetnsPath() string { return r.apiNet().Path }

// ensureAPI converges the endpoint namespace and its link (Setup's step,
// and Repair's). The router holds the namespace open (apiNs): the
// server's listener lives in that namespace, so when its mount is removed
// (ip netns del) or replaced, the same namespace is mounted back rather
// than a new one made that nothing listens in.
func (r *Router) ensureAPI() error {
	r.apiMu.Lock()
	defer r.apiMu.Unlock()
	e := r.apiNet()
	switch {
	case r.apiNs.IsOpen() && !sameNsAsPath(r.apiNs, e.Path):
		if err := deleteNamedNetns(e.Name); err != nil {
			return err
		}
		if err := mountNetns(r.apiNs, e.Path); err != nil {
			return fmt.Errorf("mount the API endpoint namespace back at %s: %w", e.Path, err)
		}
	case !isNetnsMount(e.Path):
		if err := deleteNamedNetns(e.Name); err != nil {
			return err
		}
		if err := createNamedNetns(e.Name, envSysctls); err != nil {
			return fmt.Errorf("create the API endpoint namespace: %w", err)
		}
		if err := r.plumbEnv(e, true); err != nil {
			return err
		}
		return r.holdAPINs(e.Path)
	}
	if err := r.plumbEnv(e, false); err != nil {
		return err
	}
	return r.holdAPINs(e.Path)
}

// holdAPINs opens the endpoint namespace at path (once). Caller holds
// apiMu.
func (r *Router) holdAPINs(path string) error {
	if r.apiNs.IsOpen() {
		return nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	r.apiNs = ns
	return nil
}

// apiIntact reports whether the endpoint namespace is mounted where it
// belongs and its veth pairs api0 in the service router with its eth0.
// Caller holds kmu.
func (r *Router) apiIntact() (bool, error) {
	r.apiMu.Lock()
	defer r.apiMu.Unlock()
	e := r.apiNet()
	if !sameNsAsPath(r.apiNs, e.Path) {
		return false, nil
	}
	h, err := netlink.NewHandleAt(r.apiNs)
	if err != nil {
		return false, err
	}
	defer h.Close()
	svcL, err := linkByName(r.svcH, apiLinkName)
	if err != nil {
		return false, err
	}
	envL, err := linkByName(h, EnvIfName)
	if err != nil {
		return false, err
	}
	if !paired(svcL, envL) || svcL.Attrs().Flags&net.FlagUp == 0 || envL.Attrs().Flags&net.FlagUp == 0 {
		return false, nil
	}
	return hasAddr(h, envL, host32(r.apiAddr).String())
}

// ListenAPI opens the platform endpoint's listener inside its namespace.
func (r *Router) ListenAPI() (net.Listener, error) {
	return ListenIn(r.APINetnsPath(), "tcp", net.JoinHostPort(r.apiAddr.String(), strconv.Itoa(APIPort)))
}
