package netdev

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
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

// ensureAPI converges the endpoint namespace and its link (Setup's step).
func (r *Router) ensureAPI() error {
	e := r.apiNet()
	if !isNetnsMount(e.Path) {
		if err := deleteNamedNetns(e.Name); err != nil {
			return err
		}
		if err := createNamedNetns(e.Name, envSysctls); err != nil {
			return fmt.Errorf("create the API endpoint namespace: %w", err)
		}
		return r.plumbEnv(e, true)
	}
	return r.plumbEnv(e, false)
}

// ListenAPI opens the platform endpoint's listener inside its namespace.
func (r *Router) ListenAPI() (net.Listener, error) {
	return ListenIn(r.APINetnsPath(), "tcp", net.JoinHostPort(r.apiAddr.String(), strconv.Itoa(APIPort)))
}
