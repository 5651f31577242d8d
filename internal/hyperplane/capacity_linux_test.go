package hyperplane

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

// TestCapacity: when the connections through a key's ENIs reach
// MaxConnsPerENI, another ENI is added for the key and new attaches go to
// it; once it carries nothing it is removed again.
func TestCapacity(t *testing.T) {
	f := newFixture(t, Config{MaxConnsPerENI: 3})
	n := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	f.instance(acctA, n.subnet, "10.0.1.10", "A", n.sgDB)
	e := f.ensure(acctA, fnARN(acctA, 1), []string{n.subnet}, n.sgApp)
	env1 := f.env()
	f.attach(env1.Addr, e)
	var conns []net.Conn
	for range 3 {
		c, err := netdev.DialIn(env1.Path, "tcp", "10.0.1.10:7000", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if err := f.hp.Rebalance(f.ctx); err != nil {
		t.Fatal(err)
	}
	if s := f.hp.Stats(); s.ENIs != 2 || s.Keys != 1 {
		t.Fatalf("after 3 connections on a 3-connection ENI: %+v, want a second ENI for the key", s)
	}
	env2 := f.env()
	a2 := f.attach(env2.Addr, e)
	if a2.ENI().ID == e.ID {
		t.Fatal("attach went to the full ENI")
	}
	want := "A sees " + a2.ENI().Addr.String()
	if got := eventually(want, func() string { return tcp(env2.Path, "10.0.1.10:7000") }); got != want {
		t.Errorf("through the added ENI: %q, want %q", got, want)
	}
	for _, c := range conns {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	if err := a2.Detach(); err != nil {
		t.Fatal(err)
	}
	var s Stats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := f.hp.Rebalance(f.ctx); err != nil {
			t.Fatal(err)
		}
		if s = f.hp.Stats(); s.ENIs == 1 {
			break
		}
	}
	if s.ENIs != 1 {
		t.Fatalf("after the load went away: %+v, want the extra ENI removed", s)
	}
	if es := f.hp.ENIsFor(acctA, fnARN(acctA, 1)); len(es) != 1 || es[0].ID != e.ID {
		t.Fatalf("the key's ENI: %v", es)
	}
}

// TestNoLeaks: 1,000 ensure/attach/detach/release cycles leave no address,
// map element, rule, route, link or namespace behind.
func TestNoLeaks(t *testing.T) {
	f := newFixture(t, Config{})
	n := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	keep := f.ensure(acctA, fnARN(acctA, 0), []string{n.subnet}, n.sgApp)
	f.attach(netip.MustParseAddr("100.64.200.1"), keep)
	router := f.rec.VPCs().RouterNetns(n.vpcID)
	rname := router[strings.LastIndexByte(router, '/')+1:]
	svc := f.router.SvcNetnsPath()
	sname := svc[strings.LastIndexByte(svc, '/')+1:]
	c := f.nftConn(n.vpcID)
	snap := func() string {
		ns, _, err := netdev.ListPrefixed(f.prefix)
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, cmd := range [][]string{
			{"ip", "-n", rname, "-o", "link"}, {"ip", "-n", rname, "-o", "-4", "addr"},
			{"ip", "-n", rname, "-4", "route", "show", "table", "all"}, {"ip", "-n", rname, "-4", "rule"},
			{"ip", "-n", sname, "-o", "link"}, {"ip", "-n", sname, "-4", "route", "show", "table", "all"}, {"ip", "-n", sname, "-4", "rule"},
		} {
			out, err := exec.Command(cmd[0], cmd[1:]...).Output()
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, fmt.Sprintf("%s=%d", cmd[len(cmd)-1], strings.Count(string(out), "\n")))
		}
		chains, sets, elems, err := c.TableObjects(f.prefix)
		if err != nil {
			t.Fatal(err)
		}
		ifs, err := f.m.ListInterfaces(f.ctx, acctA)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("netns=%d %s chains=%d sets=%d elems=%d enis=%d free=%d stats=%+v",
			len(ns), strings.Join(parts, " "), chains, sets, elems, len(ifs), f.available(acctA, n.subnet), f.hp.Stats())
	}
	before := snap()
	deadline := time.Now().Add(4 * time.Minute)
	i := 0
	for ; i < 1000 && time.Now().Before(deadline); i++ {
		user := fnARN(acctA, 1+i%7)
		groups := []string{n.sgApp}
		if i%2 == 1 { // a key of its own: an ENI created and deleted
			groups = []string{n.sgDB}
		}
		es, err := f.hp.Ensure(f.ctx, acctA, user, []string{n.subnet}, groups)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		a, err := f.hp.Attach(f.ctx, netip.AddrFrom4([4]byte{100, 64, 201, byte(i%250 + 1)}), es[0])
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := a.Detach(); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := f.hp.Release(f.ctx, acctA, user); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	if i < 1000 {
		t.Fatalf("only %d cycles within the time bound", i)
	}
	f.sync()
	after := snap()
	if after != before {
		t.Errorf("after %d cycles:\n before %s\n after  %s", i, before, after)
	}
	if es := f.hp.ENIsFor(acctA, fnARN(acctA, 0)); len(es) != 1 || es[0].ID != keep.ID || !slices.Contains(mustAttached(t, f, n.vpcID), netip.MustParseAddr("100.64.200.1")) {
		t.Errorf("the ENI and attachment that stayed: %v", es)
	}
}

func mustAttached(t *testing.T, f *fixture, vpcID string) []netip.Addr {
	els, err := f.nftConn(vpcID).Attached(f.prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, e := range els {
		out = append(out, e.Env)
	}
	return out
}
