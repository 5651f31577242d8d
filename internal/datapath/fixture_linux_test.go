package datapath

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test cannot run: CI must run as root")
		}
		t.Skip("needs root")
	}
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

const internetAddr = "203.0.113.1"

// makeInternet creates the namespace standing in for the internet: it owns
// 203.0.113.1 and answers TCP on port 80 with the address it sees.
func makeInternet(t testing.TB) string {
	t.Helper()
	name, del, err := netdev.NewScratchNetns("lptinet", netip.MustParseAddr(internetAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = del() })
	path := "/run/netns/" + name
	ln, err := netdev.ListenIn(path, "tcp", internetAddr+":80")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveBanner(ln, "internet")
	return path
}

// serveBanner answers every connection with "<who> sees <remote ip>\n" and
// then echoes lines until the peer closes.
func serveBanner(ln net.Listener, who string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s sees %s\n", who, host)
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s\n", sc.Text())
			}
		}()
	}
}

type fixture struct {
	t      testing.TB
	ctx    context.Context
	dir    string
	st     *store.Store
	m      *vpc.Model
	router *netdev.Router
	rec    *Reconciler
	prefix string
	inet   string

	// repairs are the kinds netdev reported repairing; a test that damages
	// the kernel sets expectRepairs, any other fails on a repair (a false
	// difference would rebuild a router for nothing).
	repairMu      sync.Mutex
	repairs       []netdev.RepairKind
	expectRepairs bool
}

func (f *fixture) onRepair(k netdev.RepairKind, obj string) {
	f.repairMu.Lock()
	defer f.repairMu.Unlock()
	f.repairs = append(f.repairs, k)
	f.t.Logf("repair: %s %s", k, obj)
}

// takeRepairs returns and forgets the repairs reported so far.
func (f *fixture) takeRepairs() []netdev.RepairKind {
	f.repairMu.Lock()
	defer f.repairMu.Unlock()
	out := f.repairs
	f.repairs = nil
	return out
}

var discard = slog.New(slog.DiscardHandler)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	requireRoot(t)
	// "d": not a prefix the e2e package sweeps as its own leftovers when it
	// starts (t/r + 4 hex digits) while these tests run.
	f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), prefix: "d" + randHex(4)}
	f.inet = makeInternet(t)
	var err error
	if f.st, err = store.Open(f.ctx, store.Options{DataDir: f.dir, Logger: discard}); err != nil {
		t.Fatal(err)
	}
	if f.m, err = vpc.Open(f.ctx, f.st, discard); err != nil {
		t.Fatal(err)
	}
	if f.router, err = netdev.NewRouter(netdev.Config{Prefix: f.prefix, UplinkNetns: f.inet, PoolSize: -1, Logger: discard, OnRepair: f.onRepair}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r := f.takeRepairs(); len(r) > 0 && !f.expectRepairs {
			t.Errorf("repairs reported without damage: %v", r)
		}
		if f.rec != nil {
			if err := f.rec.Close(); err != nil {
				t.Errorf("datapath close: %v", err)
			}
		}
		if err := f.router.Close(); err != nil {
			t.Errorf("router close: %v", err)
		}
		if f.st != nil {
			f.st.Close()
		}
		if left, err := netdev.Leftovers(f.prefix); err != nil || len(left) > 0 {
			t.Errorf("leftovers after close: %v %v", left, err)
		}
	})
	if err := f.router.Setup(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.startReconciler()
	return f
}

func (f *fixture) startReconciler() {
	f.t.Helper()
	rec, err := New(Config{Model: f.m, Router: f.router, Logger: discard, Retry: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := rec.Start(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	f.rec = rec
}

func (f *fixture) sync() {
	f.t.Helper()
	if err := f.rec.Sync(f.ctx); err != nil {
		f.t.Fatalf("sync: %v", err)
	}
}

func (f *fixture) vpc(acct, cidr string) *vpc.VPC {
	f.t.Helper()
	v, err := f.m.CreateVPC(f.ctx, acct, vpc.VPCRequest{CidrBlock: cidr})
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) subnet(acct, vpcID, cidr string) *vpc.Subnet {
	f.t.Helper()
	s, err := f.m.CreateSubnet(f.ctx, acct, vpc.SubnetRequest{VpcID: vpcID, CidrBlock: cidr, AvailabilityZone: "us-east-1a"})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) sg(acct, vpcID, name string) string {
	f.t.Helper()
	g, err := f.m.CreateSecurityGroup(f.ctx, acct, vpc.GroupRequest{VpcID: vpcID, Name: name, Description: name})
	if err != nil {
		f.t.Fatal(err)
	}
	return g.ID
}

func i32(v int32) *int32 { return &v }

// perm builds a permission: peer is a CIDR (contains "/") or a group id.
func perm(proto string, from, to int32, peer string) vpc.Permission {
	p := vpc.Permission{Protocol: proto, FromPort: i32(from), ToPort: i32(to)}
	if strings.Contains(peer, "/") {
		p.CIDRs = []vpc.CIDRSource{{CIDR: peer}}
	} else {
		p.Groups = []vpc.GroupSource{{GroupID: peer}}
	}
	return p
}

func (f *fixture) allow(acct, group string, egress bool, perms ...vpc.Permission) {
	f.t.Helper()
	if _, err := f.m.Authorize(f.ctx, acct, group, egress, perms); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) revoke(acct, group string, egress bool, perms ...vpc.Permission) {
	f.t.Helper()
	if _, err := f.m.Revoke(f.ctx, acct, group, egress, perms); err != nil {
		f.t.Fatal(err)
	}
}

type inst struct {
	id   string
	addr string
	ns   string
}

func (f *fixture) iface(acct, subnetID, ip string, groups ...string) inst {
	f.t.Helper()
	n, err := f.m.CreateInterface(f.ctx, acct, vpc.InterfaceRequest{SubnetID: subnetID, GroupIDs: groups, PrivateIP: ip})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	p, err := f.rec.WaitInterface(ctx, n.ID)
	if err != nil {
		f.t.Fatalf("interface %s: %v", n.ID, err)
	}
	return inst{id: n.ID, addr: n.PrivateIP, ns: p}
}

// listen serves a TCP banner and a UDP echo on port in the instance.
func (f *fixture) listen(in inst, who string, port int) {
	f.t.Helper()
	ln, err := netdev.ListenIn(in.ns, "tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { ln.Close() })
	go serveBanner(ln, who)
	pc, err := netdev.ListenPacketIn(in.ns, "udp", fmt.Sprintf(":%d", port))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(who+" "+string(buf[:n])), a)
		}
	}()
}

const probeTimeout = 400 * time.Millisecond

// tcp connects from an instance and returns the banner ("" if unreachable).
func tcp(from inst, addr string) string {
	c, err := netdev.DialIn(from.ns, "tcp", addr, probeTimeout)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// udp sends one datagram and returns the echo ("" if none).
func udp(from inst, addr string) string {
	c, err := netdev.DialIn(from.ns, "udp", addr, probeTimeout)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return ""
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// ping sends one ICMP echo request from an instance and waits for the reply.
func ping(from inst, addr string) bool {
	pc, err := netdev.ListenPacketIn(from.ns, "ip4:icmp", "0.0.0.0")
	if err != nil {
		return false
	}
	defer pc.Close()
	id := uint16(time.Now().UnixNano())
	msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'l', 'p'}
	sum := uint32(0)
	for i := 0; i < len(msg); i += 2 {
		sum += uint32(msg[i])<<8 | uint32(msg[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	cs := ^uint16(sum)
	msg[2], msg[3] = byte(cs>>8), byte(cs)
	dst := &net.IPAddr{IP: net.ParseIP(addr)}
	deadline := time.Now().Add(time.Second)
	_ = pc.SetDeadline(deadline)
	if _, err := pc.WriteTo(msg, dst); err != nil {
		return false
	}
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		n, a, err := pc.ReadFrom(buf)
		if err != nil {
			return false
		}
		if n >= 8 && buf[0] == 0 && uint16(buf[4])<<8|uint16(buf[5]) == id && a.String() == addr {
			return true
		}
	}
	return false
}

func nsName(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }

func addrOf(s string) netip.Addr { return netip.MustParseAddr(s) }

func vpcRoute(rtb, igw, nat string) vpc.RouteRequest {
	return vpc.RouteRequest{RouteTableID: rtb, DestinationCidrBlock: "0.0.0.0/0", GatewayID: igw, NatGatewayID: nat}
}

func natReq(subnet string) vpc.NatRequest { return vpc.NatRequest{SubnetID: subnet} }

// eventually retries a probe that is expected to succeed (bounded: 3s), so
// a loaded machine does not turn a slow first ARP or SYN into a failure.
// Probes expected to fail are not retried.
func eventually(want string, probe func() string) string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := probe()
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pingOK is ping expected to succeed, retried like eventually.
func pingOK(from inst, addr string) bool {
	return eventually("ok", func() string {
		if ping(from, addr) {
			return "ok"
		}
		return ""
	}) == "ok"
}
