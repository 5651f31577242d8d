package hyperplane

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

func fnARN(acct string, i int) string {
	return fmt.Sprintf("arn:aws:lambda:us-east-1:%s:function:fn%d", acct, i)
}

// TestReachability: an attached environment reaches its VPC's instance,
// which sees the ENI's address; security groups apply to the ENI (ingress
// by group membership on the peer, egress of the function's groups); an
// unattached environment is dropped by the service router; two accounts
// with identical VPCs and the same ENI address reach only their own
// instance; nothing reaches the internet without a NAT gateway.
func TestReachability(t *testing.T) {
	f := newFixture(t, Config{})
	nA := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	nB := f.network(acctB, "10.0.0.0/16", "10.0.1.0/24")
	f.instance(acctA, nA.subnet, "10.0.1.10", "A", nA.sgDB)
	f.instance(acctB, nB.subnet, "10.0.1.10", "B", nB.sgDB)
	eA := f.ensure(acctA, fnARN(acctA, 1), []string{nA.subnet}, nA.sgApp)
	eB := f.ensure(acctB, fnARN(acctB, 1), []string{nB.subnet}, nB.sgApp)
	if eA.Addr != eB.Addr || eA.Addr != netip.MustParseAddr("10.0.1.4") {
		t.Fatalf("ENI addresses %v, %v: want both 10.0.1.4 (the first free address)", eA.Addr, eB.Addr)
	}
	n, err := f.m.GetInterface(f.ctx, acctA, eA.ID)
	if err != nil || n.InterfaceType != vpc.InterfaceTypeLambda || n.Status != vpc.StatusInUse ||
		!strings.HasPrefix(n.Description, "AWS Lambda VPC ENI-fn1-") || n.RequesterID != acctA+":aws-lambda" {
		t.Fatalf("ENI as EC2 shows it: %+v, %v", n, err)
	}
	envA, envB, idle := f.env(), f.env(), f.env()
	f.attach(envA.Addr, eA)
	f.attach(envB.Addr, eB)
	if got := eventually("A sees 10.0.1.4", func() string { return tcp(envA.Path, "10.0.1.10:7000") }); got != "A sees 10.0.1.4" {
		t.Errorf("env of account A: %q", got)
	}
	if got := eventually("B sees 10.0.1.4", func() string { return tcp(envB.Path, "10.0.1.10:7000") }); got != "B sees 10.0.1.4" {
		t.Errorf("env of account B: %q", got)
	}

	// Unattached: dropped by the service router's egress block.
	before, _ := f.router.EgressBlockedPackets()
	after := before
	for i := 0; i < 5 && after == before; i++ { // bounded: a first SYN may wait for ARP
		if got := tcp(idle.Path, "10.0.1.10:7000"); got != "" {
			t.Errorf("unattached env reached %q", got)
		}
		after, err = f.router.EgressBlockedPackets()
	}
	if err != nil || after <= before {
		t.Errorf("egress_blocked %d -> %d (%v): want it counted", before, after, err)
	}
	// Environments never reach each other, the internet (no NAT gateway)
	// or the VPC router itself.
	for _, dst := range []string{envB.Addr.String() + ":7000", internetAddr + ":80", "10.0.1.1:7000", "10.0.1.4:7000"} {
		if got := tcp(envA.Path, dst); got != "" {
			t.Errorf("attached env reached %s: %q", dst, got)
		}
	}

	// A function in a group the instance does not allow: refused; allowed
	// once the instance's group admits that group (a set lookup on the
	// ENI's address).
	sgOther := f.sg(acctA, nA.vpcID, "other")
	eO := f.ensure(acctA, fnARN(acctA, 2), []string{nA.subnet}, sgOther)
	if eO.ID == eA.ID || eO.Addr == eA.Addr {
		t.Fatalf("another group set shares the ENI: %v %v", eO, eA)
	}
	envO := f.env()
	f.attach(envO.Addr, eO)
	if got := tcp(envO.Path, "10.0.1.10:7000"); got != "" {
		t.Errorf("function in group %s reached the db: %q", sgOther, got)
	}
	f.allow(acctA, nA.sgDB, false, perm("tcp", 7000, 7000, sgOther))
	f.sync()
	want := "A sees " + eO.Addr.String()
	if got := eventually(want, func() string { return tcp(envO.Path, "10.0.1.10:7000") }); got != want {
		t.Errorf("after allowing %s: %q, want %q", sgOther, got, want)
	}

	// Egress rules of the function's group apply to its traffic.
	f.revoke(acctA, nA.sgApp, true, perm("-1", -1, -1, "0.0.0.0/0"))
	f.sync()
	if got := tcp(envA.Path, "10.0.1.10:7000"); got != "" {
		t.Errorf("without egress rules reached %q", got)
	}
	if n, err := f.rec.VPCs().SGDroppedPackets(nA.vpcID); err != nil || n == 0 {
		t.Errorf("sg_dropped = %d, %v", n, err)
	}
	f.allow(acctA, nA.sgApp, true, perm("tcp", 7000, 7000, "10.0.1.0/24"))
	f.sync()
	if got := eventually("A sees 10.0.1.4", func() string { return tcp(envA.Path, "10.0.1.10:7000") }); got != "A sees 10.0.1.4" {
		t.Errorf("with egress tcp 7000: %q", got)
	}
	// Account B's function is untouched by A's changes.
	if got := tcp(envB.Path, "10.0.1.10:7000"); got != "B sees 10.0.1.4" {
		t.Errorf("account B after A's changes: %q", got)
	}

	// Detach: the environment is cut off again; both elements are gone.
	a, err := f.hp.Attach(f.ctx, idle.Addr, eB)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventually("B sees 10.0.1.4", func() string { return tcp(idle.Path, "10.0.1.10:7000") }); got != "B sees 10.0.1.4" {
		t.Errorf("attached later: %q", got)
	}
	if err := a.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := a.Detach(); err != nil {
		t.Fatalf("second detach: %v", err)
	}
	if got := tcp(idle.Path, "10.0.1.10:7000"); got != "" {
		t.Errorf("after detach reached %q", got)
	}
	els, err := f.nftConn(nB.vpcID).Attached(f.prefix)
	if err != nil || len(els) != 1 || els[0].Env != envB.Addr {
		t.Errorf("env2eni of B after detach: %v, %v", els, err)
	}
}

// TestNATGatewayEgress: a function whose subnet routes through a NAT
// gateway reaches the internet (leaving as the uplink's address).
func TestNATGatewayEgress(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := f.ctx
	nA := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	pub, err := f.m.CreateSubnet(ctx, acctA, vpc.SubnetRequest{VpcID: nA.vpcID, CidrBlock: "10.0.0.0/24", AvailabilityZone: "us-east-1a"})
	if err != nil {
		t.Fatal(err)
	}
	igw, err := f.m.CreateInternetGateway(ctx, acctA, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.AttachInternetGateway(ctx, acctA, igw.ID, nA.vpcID); err != nil {
		t.Fatal(err)
	}
	pubRT, err := f.m.CreateRouteTable(ctx, acctA, nA.vpcID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.CreateRoute(ctx, acctA, vpc.RouteRequest{RouteTableID: pubRT.ID, DestinationCidrBlock: "0.0.0.0/0", GatewayID: igw.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AssociateRouteTable(ctx, acctA, pubRT.ID, pub.ID); err != nil {
		t.Fatal(err)
	}
	// A function in the public subnet: no internet (no public address), as on AWS.
	ePub := f.ensure(acctA, fnARN(acctA, 9), []string{pub.ID}, nA.sgApp)
	envP := f.env()
	f.attach(envP.Addr, ePub)
	if got := tcp(envP.Path, internetAddr+":80"); got != "" {
		t.Errorf("function in a public subnet reached the internet: %q", got)
	}
	e := f.ensure(acctA, fnARN(acctA, 1), []string{nA.subnet}, nA.sgApp)
	env := f.env()
	f.attach(env.Addr, e)
	if got := tcp(env.Path, internetAddr+":80"); got != "" {
		t.Errorf("without a NAT route reached the internet: %q", got)
	}
	nat, err := f.m.CreateNatGateway(ctx, acctA, vpc.NatRequest{SubnetID: pub.ID})
	if err != nil {
		t.Fatal(err)
	}
	privRT, err := f.m.CreateRouteTable(ctx, acctA, nA.vpcID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.CreateRoute(ctx, acctA, vpc.RouteRequest{RouteTableID: privRT.ID, DestinationCidrBlock: "0.0.0.0/0", NatGatewayID: nat.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AssociateRouteTable(ctx, acctA, privRT.ID, nA.subnet); err != nil {
		t.Fatal(err)
	}
	f.sync()
	got := eventually("x", func() string { return tcp(env.Path, internetAddr+":80") })
	if !strings.HasPrefix(got, "internet sees 169.254.") {
		t.Errorf("through the NAT gateway: %q, want the uplink's masqueraded address", got)
	}
}

// TestSharing: one ENI per (subnet, group set) whatever the number of
// functions and environments; a second group set is a second ENI.
func TestSharing(t *testing.T) {
	f := newFixture(t, Config{})
	nA := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	free := f.available(acctA, nA.subnet)
	var first *ENI
	for i := range 20 {
		e := f.ensure(acctA, fnARN(acctA, i), []string{nA.subnet}, nA.sgApp)
		if first == nil {
			first = e
		} else if e.ID != first.ID {
			t.Fatalf("user %d got %s, want the shared %s", i, e.ID, first.ID)
		}
	}
	e2 := f.ensure(acctA, fnARN(acctA, 100), []string{nA.subnet}, nA.sgApp, nA.sgDB)
	if e2.ID == first.ID {
		t.Fatal("a second group set shares the ENI")
	}
	if got := f.available(acctA, nA.subnet); got != free-2 {
		t.Fatalf("available %d, want %d (two ENIs)", got, free-2)
	}
	for i := range 50 {
		env := netip.AddrFrom4([4]byte{100, 64, 200, byte(i + 1)})
		e := first
		if i%2 == 1 {
			e = e2
		}
		if a := f.attach(env, e); a.ENI().ID != e.ID {
			t.Fatalf("attach %d went to %s, want %s", i, a.ENI().ID, e.ID)
		}
	}
	if got := f.available(acctA, nA.subnet); got != free-2 {
		t.Fatalf("after 50 attaches: available %d, want %d", got, free-2)
	}
	if es := f.hp.ENIsFor(acctA, fnARN(acctA, 7)); len(es) != 1 || es[0].ID != first.ID {
		t.Fatalf("ENIsFor: %v", es)
	}
	if s := f.hp.Stats(); s.ENIs != 2 || s.Attachments != 50 {
		t.Fatalf("stats %+v", s)
	}
	els, err := f.nftConn(nA.vpcID).Attached(f.prefix)
	if err != nil || len(els) != 50 {
		t.Fatalf("env2eni: %d elements, %v", len(els), err)
	}
}

// TestLegacyMode: one ENI (and one subnet address) per environment,
// created at attach and deleted at detach.
func TestLegacyMode(t *testing.T) {
	f := newFixture(t, Config{Mode: ModePerEnvENI})
	nA := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	free := f.available(acctA, nA.subnet)
	var as []*Attachment
	seen := map[string]bool{}
	for i := range 50 {
		env := netip.AddrFrom4([4]byte{100, 64, 200, byte(i + 1)})
		a, err := f.hp.AttachPerEnv(f.ctx, env, acctA, fnARN(acctA, 1), nA.subnet, []string{nA.sgApp})
		if err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		if seen[a.ENI().ID] {
			t.Fatal("an ENI is shared in legacy mode")
		}
		seen[a.ENI().ID] = true
		as = append(as, a)
	}
	if got := f.available(acctA, nA.subnet); got != free-50 {
		t.Fatalf("available %d, want %d", got, free-50)
	}
	// Traffic works through a legacy ENI too.
	f.instance(acctA, nA.subnet, "10.0.1.200", "A", nA.sgDB)
	env := f.env()
	a, err := f.hp.AttachPerEnv(f.ctx, env.Addr, acctA, fnARN(acctA, 1), nA.subnet, []string{nA.sgApp})
	if err != nil {
		t.Fatal(err)
	}
	want := "A sees " + a.ENI().Addr.String()
	if got := eventually(want, func() string { return tcp(env.Path, "10.0.1.200:7000") }); got != want {
		t.Errorf("legacy ENI: %q, want %q", got, want)
	}
	for _, a := range append(as, a) {
		if err := a.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.available(acctA, nA.subnet); got != free-1 { // the instance
		t.Fatalf("after detach: available %d, want %d", got, free-1)
	}
}

// TestLimits: a full subnet, the per-VPC quota and the creation rate give
// typed errors with Lambda's reason codes; bad subnets and groups too.
func TestLimits(t *testing.T) {
	f := newFixture(t, Config{ENIsPerVPC: 14, Mode: ModePerEnvENI})
	n := f.network(acctA, "10.0.0.0/16", "10.0.1.0/28") // 11 usable addresses
	var errFull error
	for i := range 12 {
		_, err := f.hp.AttachPerEnv(f.ctx, netip.AddrFrom4([4]byte{100, 64, 200, byte(i + 1)}), acctA, fnARN(acctA, 1), n.subnet, []string{n.sgApp})
		if err != nil {
			errFull = err
			if i != 11 {
				t.Fatalf("attach %d: %v", i, err)
			}
		}
	}
	var he *Error
	if !errors.As(errFull, &he) || he.Reason != ReasonSubnetOutOfIPAddresses {
		t.Fatalf("full /28: %v, want %s", errFull, ReasonSubnetOutOfIPAddresses)
	}
	if _, err := f.hp.Ensure(f.ctx, acctA, fnARN(acctA, 2), []string{n.subnet}, []string{n.sgDB}); ReasonOf(err) != ReasonSubnetOutOfIPAddresses {
		t.Fatalf("ensure in a full subnet: %v", err)
	}
	// Quota: 14 interfaces per VPC (11 are in the full subnet).
	s2, err := f.m.CreateSubnet(f.ctx, acctA, vpc.SubnetRequest{VpcID: n.vpcID, CidrBlock: "10.0.2.0/24", AvailabilityZone: "us-east-1a"})
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{n.sgApp, n.sgDB, f.sg(acctA, n.vpcID, "g3"), f.sg(acctA, n.vpcID, "g4")}
	var errQuota error
	for i := range 4 {
		if _, err := f.hp.Ensure(f.ctx, acctA, fnARN(acctA, 10+i), []string{s2.ID}, groups[:i+1]); err != nil {
			errQuota = err
			if i != 3 {
				t.Fatalf("ensure %d: %v", i, err)
			}
		}
	}
	if ReasonOf(errQuota) != ReasonEniLimitExceeded {
		t.Fatalf("past the VPC quota: %v, want %s", errQuota, ReasonEniLimitExceeded)
	}
	if _, err := f.hp.Ensure(f.ctx, acctA, fnARN(acctA, 1), []string{"subnet-0123456789abcdef0"}, nil); ReasonOf(err) != ReasonInvalidSubnet {
		t.Fatalf("unknown subnet: %v", err)
	}
	if _, err := f.hp.Ensure(f.ctx, acctA, fnARN(acctA, 1), []string{s2.ID}, []string{"sg-0123456789abcdef0"}); ReasonOf(err) != ReasonInvalidSecurityGroup {
		t.Fatalf("unknown group: %v", err)
	}
	other := f.network(acctA, "10.1.0.0/16", "10.1.1.0/24")
	if _, err := f.hp.Ensure(f.ctx, acctA, fnARN(acctA, 1), []string{s2.ID}, []string{other.sgApp}); ReasonOf(err) != ReasonInvalidSecurityGroup {
		t.Fatalf("group of another VPC: %v", err)
	}
	// Subnets and groups an ENI uses cannot be deleted.
	if err := f.m.DeleteSubnet(f.ctx, acctA, s2.ID); !vpc.IsCode(err, vpc.CodeDependencyViolation) {
		t.Fatalf("delete a subnet with an ENI: %v", err)
	}
	if err := f.m.DeleteSecurityGroup(f.ctx, acctA, groups[2]); !vpc.IsCode(err, vpc.CodeDependencyViolation) {
		t.Fatalf("delete a group an ENI uses: %v", err)
	}

	// Creation rate: 1 per second, legacy attaches fail at once past it.
	g := newFixture(t, Config{Mode: ModePerEnvENI, CreateRate: 1})
	n2 := g.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	var errRate error
	for i := range 3 {
		if _, err := g.hp.AttachPerEnv(g.ctx, netip.AddrFrom4([4]byte{100, 64, 200, byte(i + 1)}), acctA, fnARN(acctA, 1), n2.subnet, []string{n2.sgApp}); err != nil {
			errRate = err
			break
		}
	}
	if ReasonOf(errRate) != ReasonEniLimitExceeded {
		t.Fatalf("past the creation rate: %v", errRate)
	}
}

// TestReleaseAndRestart: the last user's Release deletes the ENI (EC2 no
// longer shows it; the address is free); a restart keeps a used ENI with
// its address, and attaching after the restart works.
func TestReleaseAndRestart(t *testing.T) {
	f := newFixture(t, Config{})
	n := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	f.instance(acctA, n.subnet, "10.0.1.10", "A", n.sgDB)
	free := f.available(acctA, n.subnet)
	e1 := f.ensure(acctA, fnARN(acctA, 1), []string{n.subnet}, n.sgApp)
	f.ensure(acctA, fnARN(acctA, 2), []string{n.subnet}, n.sgApp)
	gone := f.ensure(acctA, fnARN(acctA, 3), []string{n.subnet}, n.sgDB)
	if err := f.hp.Release(f.ctx, acctA, fnARN(acctA, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.GetInterface(f.ctx, acctA, e1.ID); err != nil {
		t.Fatalf("ENI still used by fn2 was deleted: %v", err)
	}
	if err := f.hp.Release(f.ctx, acctA, fnARN(acctA, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.GetInterface(f.ctx, acctA, gone.ID); !vpc.IsCode(err, vpc.CodeInterfaceNotFound) {
		t.Fatalf("released ENI: %v, want not found", err)
	}
	if got := f.available(acctA, n.subnet); got != free-1 {
		t.Fatalf("available %d, want %d", got, free-1)
	}

	envA := f.env()
	f.attach(envA.Addr, e1)
	if got := eventually("A sees 10.0.1.4", func() string { return tcp(envA.Path, "10.0.1.10:7000") }); got != "A sees 10.0.1.4" {
		t.Fatalf("before restart: %q", got)
	}
	f.restart()
	es := f.hp.ENIsFor(acctA, fnARN(acctA, 2))
	if len(es) != 1 || es[0].ID != e1.ID || es[0].Addr != e1.Addr {
		t.Fatalf("after restart: %v, want %s %v", es, e1.ID, e1.Addr)
	}
	if got := f.available(acctA, n.subnet); got != free-1 {
		t.Fatalf("after restart: available %d, want %d", got, free-1)
	}
	// Attachments died with the process: the environment is cut off
	// until attached again.
	if got := tcp(envA.Path, "10.0.1.10:7000"); got != "" {
		t.Errorf("stale attachment survived the restart: %q", got)
	}
	if rules, err := f.rec.VPCs().EnvRules(); err != nil || len(rules) != 0 {
		t.Errorf("service router rules after restart: %v %v", rules, err)
	}
	f.attach(envA.Addr, es[0])
	if got := eventually("A sees 10.0.1.4", func() string { return tcp(envA.Path, "10.0.1.10:7000") }); got != "A sees 10.0.1.4" {
		t.Errorf("after restart: %q", got)
	}
	again := f.ensure(acctA, fnARN(acctA, 4), []string{n.subnet}, n.sgApp)
	if again.ID != e1.ID {
		t.Errorf("a new user after restart got %s, want the shared %s", again.ID, e1.ID)
	}
}

// TestReleaseRacingEnsure: one function releases the last share of an ENI
// while another takes a share of the same key; whichever comes first, the
// second function ends up with an ENI that exists (the ENI is not deleted
// under the share just taken).
func TestReleaseRacingEnsure(t *testing.T) {
	f := newFixture(t, Config{})
	n := f.network(acctA, "10.0.0.0/16", "10.0.1.0/24")
	for i := range 40 {
		a, b := fnARN(acctA, 2*i), fnARN(acctA, 2*i+1)
		f.ensure(acctA, a, []string{n.subnet}, n.sgApp)
		var wg sync.WaitGroup
		var relErr, ensErr error
		wg.Add(2)
		go func() { defer wg.Done(); relErr = f.hp.Release(f.ctx, acctA, a) }()
		go func() {
			defer wg.Done()
			_, ensErr = f.hp.Ensure(f.ctx, acctA, b, []string{n.subnet}, []string{n.sgApp})
		}()
		wg.Wait()
		if relErr != nil || ensErr != nil {
			t.Fatalf("round %d: release %v, ensure %v", i, relErr, ensErr)
		}
		es := f.hp.ENIsFor(acctA, b)
		if len(es) != 1 {
			t.Fatalf("round %d: the function that took a share has ENIs %v", i, es)
		}
		if _, err := f.m.GetInterface(f.ctx, acctA, es[0].ID); err != nil {
			t.Fatalf("round %d: its ENI %s: %v", i, es[0].ID, err)
		}
		if err := f.hp.Release(f.ctx, acctA, b); err != nil {
			t.Fatal(err)
		}
	}
}
