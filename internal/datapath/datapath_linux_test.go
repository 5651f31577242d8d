package datapath

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/nft"
)

const acctA, acctB = "111111111111", "222222222222"

// TestSecurityGroups: instances in one subnet and in two subnets talk over
// TCP, UDP and ICMP exactly when security groups allow it; a rule that
// references a group follows its membership; revoking a rule blocks new
// connections but keeps established ones.
func TestSecurityGroups(t *testing.T) {
	f := newFixture(t)
	v := f.vpc(acctA, "10.0.0.0/16")
	s1 := f.subnet(acctA, v.ID, "10.0.1.0/24")
	s2 := f.subnet(acctA, v.ID, "10.0.2.0/24")
	cliSG := f.sg(acctA, v.ID, "cli")
	srvSG := f.sg(acctA, v.ID, "srv")
	otherSG := f.sg(acctA, v.ID, "other")
	f.allow(acctA, srvSG, false,
		perm("tcp", 7000, 7000, cliSG), perm("udp", 7000, 7000, cliSG), perm("icmp", -1, -1, cliSG))

	cli := f.iface(acctA, s1.ID, "", cliSG)
	srv1 := f.iface(acctA, s1.ID, "", srvSG)
	srv2 := f.iface(acctA, s2.ID, "", srvSG)
	other := f.iface(acctA, s1.ID, "", otherSG)
	for _, s := range []inst{srv1, srv2, other, cli} {
		f.listen(s, s.addr, 7000)
	}
	for _, srv := range []inst{srv1, srv2} {
		addr := srv.addr + ":7000"
		if want := srv.addr + " sees " + cli.addr; eventually(want, func() string { return tcp(cli, addr) }) != want {
			got := tcp(cli, addr)
			t.Errorf("cli -> %s tcp: %q, want %q", srv.addr, got, want)
		}
		if want := srv.addr + " ping"; eventually(want, func() string { return udp(cli, addr) }) != want {
			got := udp(cli, addr)
			t.Errorf("cli -> %s udp: %q, want %q", srv.addr, got, want)
		}
		if !pingOK(cli, srv.addr) {
			t.Errorf("cli -> %s icmp: no reply", srv.addr)
		}
		if got := tcp(other, addr); got != "" {
			t.Errorf("other -> %s tcp reached: %q", srv.addr, got)
		}
		if got := udp(other, addr); got != "" {
			t.Errorf("other -> %s udp reached: %q", srv.addr, got)
		}
		if ping(other, srv.addr) {
			t.Errorf("other -> %s icmp answered", srv.addr)
		}
	}
	// Nothing allows ingress into cli (its group has no ingress rules).
	if got := tcp(srv1, cli.addr+":7000"); got != "" {
		t.Errorf("srv1 -> cli tcp reached: %q", got)
	}
	if n, err := f.rec.VPCs().SGDroppedPackets(v.ID); err != nil || n == 0 {
		t.Errorf("sg_dropped = %d, %v; want > 0", n, err)
	}

	// Membership: a new member of cli reaches srv1; its address is one
	// element of cli's member set.
	cli2 := f.iface(acctA, s2.ID, "", cliSG)
	if got := eventually(srv1.addr+" sees "+cli2.addr, func() string { return tcp(cli2, srv1.addr+":7000") }); got != srv1.addr+" sees "+cli2.addr {
		t.Errorf("new member cli2 -> srv1: %q", got)
	}
	c, err := nft.Open(f.rec.VPCs().RouterNetns(v.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	members, err := c.SetAddrsOf(f.prefix, "m_"+groupKey(cliSG))
	if err != nil || !slices.Contains(members, addrOf(cli2.addr)) || len(members) != 2 {
		t.Fatalf("cli members %v, %v", members, err)
	}
	if err := f.m.DeleteNetworkInterface(f.ctx, acctA, cli2.id); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if members, _ = c.SetAddrsOf(f.prefix, "m_"+groupKey(cliSG)); slices.Contains(members, addrOf(cli2.addr)) {
		t.Fatalf("left member still in set: %v", members)
	}

	// Revoke: an established connection keeps working, new ones fail.
	eventually(srv1.addr+" sees "+cli.addr, func() string { return tcp(cli, srv1.addr+":7000") })
	conn, err := netdev.DialIn(cli.ns, "tcp", srv1.addr+":7000", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	f.revoke(acctA, srvSG, false, perm("tcp", 7000, 7000, cliSG))
	f.sync()
	if got := tcp(cli, srv1.addr+":7000"); got != "" {
		t.Errorf("new connection after revoke reached: %q", got)
	}
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "still here\n")
	if line, err := rd.ReadString('\n'); err != nil || strings.TrimSpace(line) != "still here" {
		t.Errorf("established connection after revoke: %q, %v", line, err)
	}
	// UDP and ICMP rules are untouched.
	if got := eventually(srv1.addr+" ping", func() string { return udp(cli, srv1.addr+":7000") }); got != srv1.addr+" ping" {
		t.Errorf("udp after tcp revoke: %q", got)
	}
	// Re-authorize by CIDR: takes effect for new connections.
	f.allow(acctA, srvSG, false, perm("tcp", 7000, 7000, "10.0.1.0/24"))
	f.sync()
	if got := eventually(srv1.addr+" sees "+other.addr, func() string { return tcp(other, srv1.addr+":7000") }); got != srv1.addr+" sees "+other.addr {
		t.Errorf("other -> srv1 after CIDR rule: %q", got)
	}
	if got := eventually(srv2.addr+" sees "+cli.addr, func() string { return tcp(cli, srv2.addr+":7000") }); got != srv2.addr+" sees "+cli.addr {
		t.Errorf("cli (10.0.1.x) -> srv2 after CIDR rule: %q", got)
	}
}

// TestOverlappingVPCs: two accounts' VPCs with the same CIDR and the same
// addresses never see each other.
func TestOverlappingVPCs(t *testing.T) {
	f := newFixture(t)
	type side struct {
		acct     string
		srv, cli inst
	}
	var sides []side
	for _, acct := range []string{acctA, acctB} {
		v := f.vpc(acct, "10.0.0.0/16")
		s := f.subnet(acct, v.ID, "10.0.1.0/24")
		sg := f.sg(acct, v.ID, "open")
		f.allow(acct, sg, false, perm("tcp", 7000, 7000, "10.0.0.0/8"), perm("icmp", -1, -1, "10.0.0.0/8"))
		srv := f.iface(acct, s.ID, "10.0.1.10", sg)
		cli := f.iface(acct, s.ID, "10.0.1.11", sg)
		f.listen(srv, "acct-"+acct, 7000)
		sides = append(sides, side{acct, srv, cli})
	}
	for _, s := range sides {
		if got, want := eventually("acct-"+s.acct+" sees 10.0.1.11", func() string { return tcp(s.cli, "10.0.1.10:7000") }), "acct-"+s.acct+" sees 10.0.1.11"; got != want {
			t.Errorf("%s: %q, want %q", s.acct, got, want)
		}
	}
	// Each router holds only its own VPC's interfaces.
	for _, s := range sides {
		if !pingOK(s.cli, "10.0.1.10") {
			t.Errorf("%s: no ping reply from its own 10.0.1.10", s.acct)
		}
	}
	if sides[0].srv.ns == sides[1].srv.ns {
		t.Fatal("two accounts share an instance namespace")
	}
}

// TestNATGateway: a subnet routed to a NAT gateway (in a subnet routed to
// the internet gateway) reaches the internet, masqueraded; a subnet without
// that route does not; the internet gateway never carries private
// destinations (dropped and counted).
func TestNATGateway(t *testing.T) {
	f := newFixture(t)
	v := f.vpc(acctA, "10.0.0.0/16")
	pub := f.subnet(acctA, v.ID, "10.0.0.0/24")
	priv := f.subnet(acctA, v.ID, "10.0.1.0/24")
	iso := f.subnet(acctA, v.ID, "10.0.2.0/24")
	ctx := f.ctx
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
	if _, err := f.m.AssociateRouteTable(ctx, acctA, privRT.ID, priv.ID); err != nil {
		t.Fatal(err)
	}
	sg := f.sg(acctA, v.ID, "egress-only")
	p := f.iface(acctA, priv.ID, "", sg)
	i := f.iface(acctA, iso.ID, "", sg)
	got := tcp(p, internetAddr+":80")
	for deadline := time.Now().Add(3 * time.Second); got == "" && time.Now().Before(deadline); got = tcp(p, internetAddr+":80") {
	}
	if !strings.HasPrefix(got, "internet sees 169.254.") {
		t.Errorf("private subnet -> internet: %q, want the uplink's masqueraded address", got)
	}
	if got := tcp(i, internetAddr+":80"); got != "" {
		t.Errorf("isolated subnet -> internet reached: %q", got)
	}
	// Private destinations never leave through the internet gateway.
	before, _ := f.rec.VPCs().IGWBlockedPackets(v.ID)
	if got := tcp(p, "192.168.77.1:80"); got != "" {
		t.Errorf("private destination reached: %q", got)
	}
	if got := tcp(p, "100.64.0.9:80"); got != "" {
		t.Errorf("CGNAT destination reached: %q", got)
	}
	after, err := f.rec.VPCs().IGWBlockedPackets(v.ID)
	if err != nil || after <= before {
		t.Errorf("igw_blocked %d -> %d (%v): want it counted", before, after, err)
	}
	// Removing the private subnet's route cuts it off.
	if err := f.m.DeleteRoute(ctx, acctA, privRT.ID, "0.0.0.0/0"); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if got := tcp(p, internetAddr+":80"); got != "" {
		t.Errorf("after deleting the NAT route: reached %q", got)
	}
}
