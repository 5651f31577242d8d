package datapath

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// run runs an operator's command (ip, nft) and fails the test if it fails.
func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitRepaired waits (bounded) until want was reported and check holds:
// the running reconciler finds the damage on its own, by its timer or a
// namespace removal event.
func (f *fixture) waitRepaired(t *testing.T, what string, want netdev.RepairKind, check func() bool) {
	t.Helper()
	var seen []netdev.RepairKind
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen = append(seen, f.takeRepairs()...)
		ok := check()
		if ok && slices.Contains(seen, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not repaired within 20s (reported %v, want %s; datapath works: %v)", what, seen, want, ok)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRepairWhileRunning: kernel objects of a VPC deleted behind the
// server's back are rebuilt by the running reconciler within seconds,
// without a restart, and each repair is reported by kind; instances keep
// their namespace (a listener opened before the damage answers after it).
func TestRepairWhileRunning(t *testing.T) {
	f := newFixture(t)
	f.expectRepairs = true
	ctx := f.ctx
	v := f.vpc(acctA, "10.0.0.0/16")
	pub := f.subnet(acctA, v.ID, "10.0.0.0/24")
	s := f.subnet(acctA, v.ID, "10.0.1.0/24")
	cliSG := f.sg(acctA, v.ID, "cli")
	srvSG := f.sg(acctA, v.ID, "srv")
	f.allow(acctA, srvSG, false, perm("tcp", 7000, 7000, cliSG))
	srv := f.iface(acctA, s.ID, "", srvSG)
	cli := f.iface(acctA, s.ID, "", cliSG)
	f.listen(srv, "srv", 7000)
	f.listen(srv, "srv", 7001) // no rule allows it

	// A NAT gateway for the private subnet, and an internet gateway.
	igw, err := f.m.CreateInternetGateway(ctx, acctA, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.AttachInternetGateway(ctx, acctA, igw.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	pubRT, err := f.m.CreateRouteTable(ctx, acctA, v.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.CreateRoute(ctx, acctA, vpcRoute(pubRT.ID, igw.ID, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AssociateRouteTable(ctx, acctA, pubRT.ID, pub.ID); err != nil {
		t.Fatal(err)
	}
	nat, err := f.m.CreateNatGateway(ctx, acctA, natReq(pub.ID))
	if err != nil {
		t.Fatal(err)
	}
	privRT, err := f.m.CreateRouteTable(ctx, acctA, v.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.CreateRoute(ctx, acctA, vpcRoute(privRT.ID, "", nat.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AssociateRouteTable(ctx, acctA, privRT.ID, s.ID); err != nil {
		t.Fatal(err)
	}
	// A Hyperplane ENI (an address of the router itself).
	hp, err := f.m.CreateInterface(ctx, acctA, vpc.InterfaceRequest{SubnetID: s.ID, GroupIDs: []string{cliSG}, InterfaceType: vpc.InterfaceTypeLambda})
	if err != nil {
		t.Fatal(err)
	}
	f.sync()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := f.rec.WaitInterface(wctx, hp.ID); err != nil {
		t.Fatal(err)
	}
	// An execution environment attached to it (as a warm function is).
	envNet, err := f.router.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer f.router.Release(envNet)
	if err := f.rec.VPCs().Attach(v.ID, envNet.Addr, addrOf(hp.PrivateIP)); err != nil {
		t.Fatal(err)
	}
	defer f.rec.VPCs().Detach(envNet.Addr)
	fn := inst{ns: envNet.Path}

	router := f.rec.VPCs().RouterNetns(v.ID)
	rns := nsName(router)
	toSrv := func() bool { return tcp(cli, srv.addr+":7000") == "srv sees "+cli.addr }
	fnToSrv := func() bool { return tcp(fn, srv.addr+":7000") == "srv sees "+hp.PrivateIP }
	toInternet := func() bool { return strings.HasPrefix(tcp(cli, internetAddr+":80"), "internet sees 169.254.") }
	works := func() bool { return toSrv() && fnToSrv() && toInternet() }
	if !f.eventuallyTrue(works) {
		t.Fatalf("before any damage: to srv %q, function to srv %q, to the internet %q", tcp(cli, srv.addr+":7000"), tcp(fn, srv.addr+":7000"), tcp(cli, internetAddr+":80"))
	}
	if got := tcp(cli, srv.addr+":7001"); got != "" {
		t.Fatalf("a port no rule allows answered before any damage: %q", got)
	}
	if r := f.takeRepairs(); len(r) > 0 {
		t.Fatalf("repairs without damage: %v", r)
	}
	srvIno := inode(t, srv.ns)

	// The router's table: gone, rebuilt (and the port no rule allows is
	// closed again).
	run(t, "ip", "netns", "exec", rns, "nft", "delete", "table", "ip", f.prefix)
	f.waitRepaired(t, "router nft table deleted", netdev.RepairVPCNft, func() bool { return hasTable(t, router, f.prefix) && works() })
	if got := tcp(cli, srv.addr+":7001"); got != "" {
		t.Errorf("after the table was rebuilt, a port no rule allows answered: %q", got)
	}

	// A member of a security group's set: the client's address.
	run(t, "ip", "netns", "exec", rns, "nft", "delete", "element", "ip", f.prefix, "m_"+groupKey(cliSG), "{", cli.addr, "}")
	f.waitRepaired(t, "SG set element deleted", netdev.RepairSGSet, toSrv)

	// The attached environment's element of env2eni.
	run(t, "ip", "netns", "exec", rns, "nft", "delete", "element", "ip", f.prefix, nft.MapEnvENI, "{", envNet.Addr.String(), "}")
	f.waitRepaired(t, "env2eni element deleted", netdev.RepairENIMap, fnToSrv)

	// The NAT gateway's masquerade rule.
	natNs := netdev.InstanceNetnsName(f.prefix, nat.NetworkInterfaceID)
	run(t, "ip", "netns", "exec", natNs, "nft", "flush", "chain", "ip", f.prefix, nft.ChainPostrouting)
	f.waitRepaired(t, "NAT gateway rule deleted", netdev.RepairNAT, toInternet)

	// An instance's veth.
	run(t, "ip", "-n", rns, "link", "del", "i"+idHex(srv.id)[:14])
	f.waitRepaired(t, "instance veth deleted", netdev.RepairInterface, toSrv)

	// The Hyperplane ENI's address: WaitInterface (what function creation
	// waits for) checks the kernel, so it returns only once it is back.
	run(t, "ip", "-n", rns, "addr", "del", hp.PrivateIP+"/32", "dev", "lo")
	if _, err := f.rec.WaitInterface(wctx, hp.ID); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "-n", rns, "-4", "-o", "addr", "show", "dev", "lo").Output(); !strings.Contains(string(out), " "+hp.PrivateIP+"/32") {
		t.Fatalf("WaitInterface returned while the ENI address is missing:\n%s", out)
	}
	f.waitRepaired(t, "ENI address deleted", netdev.RepairENIAddress, func() bool { return true })

	// The router namespace itself, as "ip netns del" removes it: rebuilt,
	// and the instances' namespaces adopted, so the listener opened before
	// still answers; the attached environment reaches it again.
	run(t, "ip", "netns", "del", rns)
	f.waitRepaired(t, "router namespace deleted", netdev.RepairVPCNetns, works)
	if got := inode(t, srv.ns); got != srvIno {
		t.Errorf("the instance's namespace was replaced (inode %d -> %d), not adopted", srvIno, got)
	}
	if got := tcp(cli, srv.addr+":7001"); got != "" {
		t.Errorf("after the router was rebuilt, a port no rule allows answered: %q", got)
	}

	// The service router namespace: rebuilt with the uplink, every
	// environment's veth, the VPC's internet gateway and hyperplane links
	// and the attached environment's rule.
	run(t, "ip", "netns", "del", f.prefix+"-svc")
	f.waitRepaired(t, "service router namespace deleted", netdev.RepairServiceNetns, works)

	// Nothing left to repair: passes stay quiet.
	if err := f.rec.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	f.takeRepairs()
	if err := f.rec.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if r := f.takeRepairs(); len(r) > 0 {
		t.Fatalf("repairs after everything was repaired: %v", r)
	}
}

func (f *fixture) eventuallyTrue(cond func() bool) bool {
	return eventually("ok", func() string {
		if cond() {
			return "ok"
		}
		return ""
	}) == "ok"
}

func hasTable(t *testing.T, nsPath, name string) bool {
	t.Helper()
	c, err := nft.Open(nsPath)
	if err != nil {
		return false
	}
	defer c.Close()
	ok, err := c.HasTable(name)
	return err == nil && ok
}
