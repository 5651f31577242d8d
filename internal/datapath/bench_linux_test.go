package datapath

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/nft"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func reportLatency(b *testing.B, ds []time.Duration) {
	b.ReportMetric(float64(percentile(ds, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(ds, 0.99).Microseconds())/1000, "p99-ms")
}

// benchVPCs is a netdev VPC datapath on the fixture's router, driven
// directly with specs (the model's reconciler is stopped so it does not
// sweep them).
func benchVPCs(b *testing.B) (*fixture, *netdev.VPCs) {
	f := newFixture(b)
	f.rec.Stop()
	v := netdev.NewVPCs(f.router)
	b.Cleanup(func() {
		if err := v.Close(); err != nil {
			b.Errorf("close: %v", err)
		}
	})
	return f, v
}

func benchSpec(members, rules int) netdev.VPCSpec {
	sub := netip.MustParsePrefix("10.0.1.0/24")
	s := netdev.VPCSpec{ID: "vpc-0b0b0b0b0b0b0b0b0", CIDR: netip.MustParsePrefix("10.0.0.0/16"),
		Subnets: []netdev.SubnetSpec{{ID: "subnet-0a", CIDR: sub, Gateway: netip.MustParseAddr("10.0.1.1"), Default: netdev.RouteNone}}}
	g := nft.SecurityGroup{ID: "0c0c0c0c0c0c0c0c0"}
	for i := range members {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0x0a020000+uint32(i)) // 10.2.x.y: not instances
		g.Members = append(g.Members, netip.AddrFrom4(a))
	}
	for i := range rules {
		g.Ingress = append(g.Ingress, nft.SGRule{Proto: 6, FromPort: 1000 + i, ToPort: 1000 + i, Group: g.ID})
	}
	g.Egress = []nft.SGRule{{Proto: nft.ProtoAll, CIDR: netip.MustParsePrefix("0.0.0.0/0")}}
	s.Groups = []nft.SecurityGroup{g}
	return s
}

func benchIface(i int) netdev.IfaceSpec {
	a := netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + i%200)})
	return netdev.IfaceSpec{ID: fmt.Sprintf("eni-0d%015x", i), Addr: a, Subnet: netip.MustParsePrefix("10.0.1.0/24"),
		Gateway: netip.MustParseAddr("10.0.1.1"), MAC: net.HardwareAddr{0x02, 0, 0, 0, byte(i >> 8), byte(i)}, Groups: []string{"0c0c0c0c0c0c0c0c0"}}
}

// BenchmarkInterfaceCreate: create + attach one interface (namespace, veth,
// addresses, routes, security-group chains and map elements) in a VPC
// router, with one netlink/nft transaction per step.
func BenchmarkInterfaceCreate(b *testing.B) {
	f, v := benchVPCs(b)
	ctx := f.ctx
	base := benchSpec(10, 10)
	if err := v.Apply(ctx, []netdev.VPCSpec{base}); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := base
		s.Interfaces = []netdev.IfaceSpec{benchIface(i)}
		t := time.Now()
		if err := v.Apply(ctx, []netdev.VPCSpec{s}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
		b.StopTimer()
		if _, ok := v.InterfaceNetns(s.Interfaces[0].ID); !ok {
			b.Fatal("not ready")
		}
		if err := v.Apply(ctx, []netdev.VPCSpec{base}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkInterfaceCreateModel is the same through the model: the EC2
// CreateNetworkInterface record, the reconciler reacting to the change
// feed, and the wait for the namespace (AttachNetworkInterface's wait).
func BenchmarkInterfaceCreateModel(b *testing.B) {
	f := newFixture(b)
	v := f.vpc(acctA, "10.0.0.0/16")
	s := f.subnet(acctA, v.ID, "10.0.0.0/20")
	sg := f.sg(acctA, v.ID, "app")
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		in := f.iface(acctA, s.ID, "", sg)
		lat = append(lat, time.Since(t))
		b.StopTimer()
		if err := f.m.DeleteInterface(f.ctx, acctA, in.id); err != nil {
			b.Fatal(err)
		}
		f.sync()
		b.StartTimer()
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkSGMember: one member joining and leaving a group, as the
// datapath applies it (a spec diff that becomes one set-element change)
// and as the bare nft element operation, with 10 and 10,000 members and
// 10 and 1,000 rules.
func BenchmarkSGMember(b *testing.B) {
	for _, tc := range []struct{ members, rules int }{{10, 10}, {10000, 10}, {10, 1000}, {10000, 1000}} {
		b.Run(fmt.Sprintf("members=%d/rules=%d", tc.members, tc.rules), func(b *testing.B) {
			f, v := benchVPCs(b)
			base := benchSpec(tc.members, tc.rules)
			base.Interfaces = []netdev.IfaceSpec{benchIface(0), benchIface(1)}
			if err := v.Apply(f.ctx, []netdev.VPCSpec{base}); err != nil {
				b.Fatal(err)
			}
			joined := base
			g := base.Groups[0]
			g.Members = append(slices.Clone(g.Members), netip.MustParseAddr("10.3.0.1"))
			joined.Groups = []nft.SecurityGroup{g}
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, s := range []netdev.VPCSpec{joined, base} {
					t := time.Now()
					if err := v.Apply(f.ctx, []netdev.VPCSpec{s}); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t))
				}
			}
			b.StopTimer()
			reportLatency(b, lat)
			// The bare element operation on a lasting nft connection.
			c, err := nft.Open(v.RouterNetns(base.ID))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			set := "m_" + g.ID
			x := []netip.Addr{netip.MustParseAddr("10.3.0.2")}
			var raw []time.Duration
			for i := 0; i < 200; i++ {
				t := time.Now()
				if err := c.SetAddrs(f.prefix, set, x, i%2 == 1); err != nil {
					b.Fatal(err)
				}
				raw = append(raw, time.Since(t))
			}
			b.ReportMetric(float64(percentile(raw, 0.5).Microseconds())/1000, "nft-elem-p50-ms")
		})
	}
}

// BenchmarkTCPConnect: new TCP connections per second between two
// instances of one subnet through the router and both security groups
// (ingress by group reference, conntrack). Client and server are separate
// processes (this test binary re-executed inside each instance's
// namespace), as two instances are; in one process the Go runtime of the
// benchmark itself was the bottleneck. Each run is bounded to 15,000
// connections and 3 seconds.
//
// conn/s is the datapath's rate: the client reuses one socket per thread
// (see connReuse). fresh-socket-conn/s is the same with a new socket per
// connection, one run per iteration too. For scale it also reports the
// reuse client against a server on the loopback of one namespace
// (loopback-conn/s), where no routing, veth or conntrack is involved.
func BenchmarkTCPConnect(b *testing.B) {
	f := newFixture(b)
	v := f.vpc(acctA, "10.0.0.0/16")
	s := f.subnet(acctA, v.ID, "10.0.1.0/24")
	cliSG, srvSG := f.sg(acctA, v.ID, "cli"), f.sg(acctA, v.ID, "srv")
	f.allow(acctA, srvSG, false, perm("tcp", 7000, 7000, cliSG))
	cli := f.iface(acctA, s.ID, "", cliSG)
	srv := f.iface(acctA, s.ID, "", srvSG)
	stop := startConnServer(b, srv.ns, srv.addr+":7000")
	defer stop()
	rate := map[string]struct {
		n int64
		d time.Duration
	}{}
	run := func(ns, addr, mode string) {
		n, d := connectFrom(b, ns, addr, mode)
		r := rate[addr+mode]
		r.n += n
		r.d += d
		rate[addr+mode] = r
	}
	report := func(addr, mode, unit string) {
		r := rate[addr+mode]
		b.ReportMetric(float64(r.n)/r.d.Seconds(), unit)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order so neither mode always runs first.
		modes := []string{connReuse, connFresh}
		if i%2 == 1 {
			modes[0], modes[1] = modes[1], modes[0]
		}
		for _, m := range modes {
			run(cli.ns, srv.addr+":7000", m)
		}
	}
	b.StopTimer()
	report(srv.addr+":7000", connReuse, "conn/s")
	report(srv.addr+":7000", connFresh, "fresh-socket-conn/s")
	// Baseline: the same processes on one namespace's loopback.
	stopLo := startConnServer(b, cli.ns, "127.0.0.1:7001")
	defer stopLo()
	run(cli.ns, "127.0.0.1:7001", connReuse)
	report("127.0.0.1:7001", connReuse, "loopback-conn/s")
}
