package netdev

import (
	"bufio"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tunnelLab: an underlay namespace with a bridge, two "host" namespaces
// joined to it by veths (198.18.77.1 and .2), and in each host two router
// namespaces (two VPCs with the same CIDR, as two accounts may have).
// Every address lives in namespaces the test made.
type tunnelLab struct {
	hosts   [2]string     // host netns paths
	under   [2]netip.Addr // their underlay addresses
	routers [2][2]string  // [vpc][host] router netns paths
}

func newNS(t *testing.T, prefix string, addrs ...netip.Addr) string {
	t.Helper()
	name, del, err := NewScratchNetns(prefix, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = del() })
	return "/run/netns/" + name
}

func newTunnelLab(t *testing.T) *tunnelLab {
	t.Helper()
	requireRoot(t)
	lab := &tunnelLab{under: [2]netip.Addr{netip.MustParseAddr("198.18.77.1"), netip.MustParseAddr("198.18.77.2")}}
	br := newNS(t, "lpttub")
	bh := handleAt(t, br)
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := bh.LinkAdd(bridge); err != nil {
		t.Fatal(err)
	}
	if err := bh.LinkSetUp(bridge); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		lab.hosts[i] = newNS(t, "lpttuh")
		hh := handleAt(t, lab.hosts[i])
		hns := nsFd(t, lab.hosts[i])
		peer := "u" + string(rune('1'+i))
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: peer}, PeerName: "eth0", PeerNamespace: netlink.NsFd(hns)}
		if err := bh.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		bl, _ := bh.LinkByName(peer)
		if err := bh.LinkSetMaster(bl, bridge); err != nil {
			t.Fatal(err)
		}
		if err := bh.LinkSetUp(bl); err != nil {
			t.Fatal(err)
		}
		hl, err := hh.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := hh.AddrAdd(hl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(lab.under[i], 24))}); err != nil {
			t.Fatal(err)
		}
		if err := hh.LinkSetUp(hl); err != nil {
			t.Fatal(err)
		}
	}
	// Router namespaces: VPC v's instance on host h is 10.0.1.(10+10h).
	for v := range 2 {
		for h := range 2 {
			lab.routers[v][h] = newNS(t, "lpttur", netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + 10*h)}))
		}
	}
	return lab
}

func nsFd(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// spec is host h's tunnel of VPC v: the other host's instance routed to it.
func (lab *tunnelLab) spec(v, h int) TunnelSpec {
	o := 1 - h
	return TunnelSpec{VNI: uint32(4100 + v), Local: lab.under[h], Peers: []TunnelPeer{{
		Underlay: lab.under[o], Routes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + 10*o)}), 32)},
	}}}
}

func banner(t *testing.T, ns, addr, who string) {
	t.Helper()
	ln, err := ListenIn(ns, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(who + " sees " + c.RemoteAddr().(*net.TCPAddr).IP.String() + "\n"))
			c.Close()
		}
	}()
}

func dialRead(ns, addr string) string {
	c, err := DialIn(ns, "tcp", addr, 500*time.Millisecond)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	s, _ := bufio.NewReader(c).ReadString('\n')
	return s
}

// TestTunnelJoinsRouters: two hosts' routers of one VPC joined by VXLAN
// from static entries carry TCP both ways; a second VPC with the same
// CIDR on the same hosts (another VNI) reaches only its own instance;
// applying again changes nothing; removing the peer removes its entries;
// no peers removes the device.
func TestTunnelJoinsRouters(t *testing.T) {
	lab := newTunnelLab(t)
	for v := range 2 {
		for h := range 2 {
			banner(t, lab.routers[v][h], netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + 10*h)}).String()+":7000", string(rune('A'+v))+string(rune('1'+h)))
			if err := SetTunnel(lab.hosts[h], lab.routers[v][h], lab.spec(v, h)); err != nil {
				t.Fatalf("vpc %d host %d: %v", v, h, err)
			}
		}
	}
	for v := range 2 {
		want := string(rune('A'+v)) + "2 sees 10.0.1.10\n"
		if got := dialRead(lab.routers[v][0], "10.0.1.20:7000"); got != want {
			t.Errorf("vpc %d: host 1 -> host 2: %q, want %q", v, got, want)
		}
		want = string(rune('A'+v)) + "1 sees 10.0.1.20\n"
		if got := dialRead(lab.routers[v][1], "10.0.1.10:7000"); got != want {
			t.Errorf("vpc %d: host 2 -> host 1: %q, want %q", v, got, want)
		}
	}
	// The device's UDP socket is in the host namespace, the device in the
	// router's; the entries are static.
	rh := handleAt(t, lab.routers[0][0])
	l, err := rh.LinkByName(TunnelLinkName)
	if err != nil {
		t.Fatal(err)
	}
	vx := l.(*netlink.Vxlan)
	if vx.VxlanId != 4100 || vx.Learning || !slices.Equal(vx.HardwareAddr, TunnelMAC(lab.under[0])) || vx.MTU != 1450 {
		t.Errorf("device: vni %d learning %v mac %v mtu %d", vx.VxlanId, vx.Learning, vx.HardwareAddr, vx.MTU)
	}
	idx := l.Attrs().Index
	if err := SetTunnel(lab.hosts[0], lab.routers[0][0], lab.spec(0, 0)); err != nil {
		t.Fatal(err)
	}
	if l2, err := rh.LinkByName(TunnelLinkName); err != nil || l2.Attrs().Index != idx {
		t.Errorf("second apply replaced the device (%v)", err)
	}
	count := func() (neigh, fdb, routes int) {
		n, _ := rh.NeighList(idx, unix.AF_INET)
		f, _ := rh.NeighList(idx, unix.AF_BRIDGE)
		r, _ := rh.RouteListFiltered(unix.AF_INET, &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		return len(n), len(f), len(r)
	}
	if n, f, r := count(); n != 1 || f != 1 || r != 1 {
		t.Errorf("entries after two applies: %d neighbours, %d fdb, %d routes; want 1 each", n, f, r)
	}
	// A repointed peer (its instance moved to a third host): the old
	// entries go, the new ones come.
	third := netip.MustParseAddr("198.18.77.3")
	s := lab.spec(0, 0)
	s.Peers[0].Underlay = third
	if err := SetTunnel(lab.hosts[0], lab.routers[0][0], s); err != nil {
		t.Fatal(err)
	}
	fdb, _ := rh.NeighList(idx, unix.AF_BRIDGE)
	if n, f, r := count(); n != 1 || f != 1 || r != 1 || !slices.Equal(fdb[0].HardwareAddr, TunnelMAC(third)) {
		t.Errorf("after repointing: %d neighbours, %d fdb (%v), %d routes", n, f, fdb, r)
	}
	if got := dialRead(lab.routers[0][0], "10.0.1.20:7000"); got != "" {
		t.Errorf("reached the instance through a peer that is not there: %q", got)
	}
	if err := SetTunnel(lab.hosts[0], lab.routers[0][0], TunnelSpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rh.LinkByName(TunnelLinkName); err == nil {
		t.Error("no peers: the device is still there")
	}
	// Bad input names itself.
	if err := SetTunnel(lab.hosts[0], lab.routers[0][0], TunnelSpec{VNI: 1 << 24, Local: lab.under[0], Peers: s.Peers}); err == nil {
		t.Error("a VNI of 2^24 was accepted")
	}
}
