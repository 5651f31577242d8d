package hyperplane

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
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/datapath"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

const acctA, acctB = "111111111111", "222222222222"

var discard = slog.New(slog.DiscardHandler)

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

type fixture struct {
	t      testing.TB
	ctx    context.Context
	dir    string
	prefix string
	st     *store.Store
	m      *vpc.Model
	router *netdev.Router
	rec    *datapath.Reconciler
	hp     *Manager
	hpCfg  Config
}

// newFixture: a store, the VPC model, a service router whose uplink ends
// in a namespace standing in for the internet (203.0.113.1:80), the VPC
// datapath and a manager configured by cfg.
func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	requireRoot(t)
	f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), prefix: "h" + randHex(4)}
	inet, delInet, err := netdev.NewScratchNetns("lphinet", netip.MustParseAddr(internetAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = delInet() })
	ln, err := netdev.ListenIn("/run/netns/"+inet, "tcp", internetAddr+":80")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveBanner(ln, "internet")

	if f.st, err = store.Open(f.ctx, store.Options{DataDir: f.dir, Logger: discard}); err != nil {
		t.Fatal(err)
	}
	if f.m, err = vpc.Open(f.ctx, f.st, discard); err != nil {
		t.Fatal(err)
	}
	if f.router, err = netdev.NewRouter(netdev.Config{Prefix: f.prefix, UplinkNetns: "/run/netns/" + inet, PoolSize: -1, Logger: discard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if f.hp != nil {
			f.hp.Close()
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
	f.hpCfg = cfg
	f.start()
	return f
}

// start starts the datapath and a manager over the fixture's store.
func (f *fixture) start() {
	f.t.Helper()
	rec, err := datapath.New(datapath.Config{Model: f.m, Router: f.router, Logger: discard, Retry: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := rec.Start(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	f.rec = rec
	cfg := f.hpCfg
	cfg.Model, cfg.Datapath, cfg.Router, cfg.Store, cfg.Logger = f.m, rec, f.router, f.st, discard
	if cfg.LoadInterval == 0 {
		cfg.LoadInterval = -1
	}
	if cfg.CreateRate == 0 {
		cfg.CreateRate = 10000
	}
	hp, err := New(f.ctx, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.hp = hp
}

// restart simulates a crash: the manager and datapath stop without
// teardown, the store is reopened, both start again.
func (f *fixture) restart() {
	f.t.Helper()
	f.hp.Close()
	f.rec.Stop()
	f.st.Close()
	var err error
	if f.st, err = store.Open(f.ctx, store.Options{DataDir: f.dir, Logger: discard}); err != nil {
		f.t.Fatal(err)
	}
	if f.m, err = vpc.Open(f.ctx, f.st, discard); err != nil {
		f.t.Fatal(err)
	}
	f.start()
}

func (f *fixture) sync() {
	f.t.Helper()
	if err := f.rec.Sync(f.ctx); err != nil {
		f.t.Fatalf("sync: %v", err)
	}
}

type net1 struct {
	vpcID, subnet, sgApp, sgDB string
}

// network: a VPC with one subnet, a function group "app" (default egress:
// everything) and a group "db" allowing tcp 7000 from members of "app".
func (f *fixture) network(acct, cidr, subnetCIDR string) net1 {
	f.t.Helper()
	v, err := f.m.CreateVPC(f.ctx, acct, vpc.VPCRequest{CidrBlock: cidr})
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := f.m.CreateSubnet(f.ctx, acct, vpc.SubnetRequest{VpcID: v.ID, CidrBlock: subnetCIDR, AvailabilityZone: "us-east-1a"})
	if err != nil {
		f.t.Fatal(err)
	}
	n := net1{vpcID: v.ID, subnet: s.ID, sgApp: f.sg(acct, v.ID, "app"), sgDB: f.sg(acct, v.ID, "db")}
	f.allow(acct, n.sgDB, false, perm("tcp", 7000, 7000, n.sgApp))
	return n
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

// instance creates an interface (its namespace built by the datapath) and
// serves "<who> sees <source>" on port 7000.
func (f *fixture) instance(acct, subnet, ip, who string, groups ...string) string {
	f.t.Helper()
	n, err := f.m.CreateInterface(f.ctx, acct, vpc.InterfaceRequest{SubnetID: subnet, GroupIDs: groups, PrivateIP: ip})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	p, err := f.rec.WaitInterface(ctx, n.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	ln, err := netdev.ListenIn(p, "tcp", ":7000")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { ln.Close() })
	go serveBanner(ln, who)
	return n.PrivateIP
}

// env takes an environment namespace from the router.
func (f *fixture) env() *netdev.EnvNet {
	f.t.Helper()
	e, err := f.router.Take(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = f.router.Release(e) })
	return e
}

func (f *fixture) ensure(acct, user string, subnets []string, groups ...string) *ENI {
	f.t.Helper()
	es, err := f.hp.Ensure(f.ctx, acct, user, subnets, groups)
	if err != nil {
		f.t.Fatal(err)
	}
	return es[0]
}

func (f *fixture) attach(env netip.Addr, e *ENI) *Attachment {
	f.t.Helper()
	a, err := f.hp.Attach(f.ctx, env, e)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = a.Detach() })
	return a
}

func (f *fixture) available(acct, subnet string) int {
	f.t.Helper()
	s, err := f.m.GetSubnet(f.ctx, acct, subnet)
	if err != nil {
		f.t.Fatal(err)
	}
	return s.AvailableIPs
}

func (f *fixture) nftConn(vpcID string) *nft.Conn {
	f.t.Helper()
	c, err := nft.Open(f.rec.VPCs().RouterNetns(vpcID))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// serveBanner answers every connection with "<who> sees <remote ip>\n"
// and then echoes lines until the peer closes (bounded by 30s).
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

const probeTimeout = 400 * time.Millisecond

// tcp connects from a namespace and returns the banner ("" if unreachable).
func tcp(ns, addr string) string {
	c, err := netdev.DialIn(ns, "tcp", addr, probeTimeout)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// eventually retries a probe expected to succeed (bounded: 3s).
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
