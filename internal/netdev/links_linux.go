package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.ESRCH) || errors.Is(err, os.ErrNotExist)
}

// linkByName returns nil, nil when the link does not exist.
func linkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return l, nil
}

// delLink deletes a link by name; already gone is success.
func delLink(h *netlink.Handle, name string) error {
	l, err := linkByName(h, name)
	if err != nil || l == nil {
		return err
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func host32(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }

// ensureAddr makes want an IPv4 address of link; with exclusive, other IPv4
// addresses are removed.
func ensureAddr(h *netlink.Handle, link netlink.Link, want netip.Prefix, exclusive bool) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	found := false
	for _, a := range addrs {
		p, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && netip.PrefixFrom(p.Unmap(), ones) == want {
			found = true
			continue
		}
		if exclusive {
			if err := h.AddrDel(link, &a); err != nil && !isNotFound(err) {
				return fmt.Errorf("remove stale address %v from %s: %w", a.IPNet, link.Attrs().Name, err)
			}
		}
	}
	if found {
		return nil
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(want)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %v to %s: %w", want, link.Attrs().Name, err)
	}
	return nil
}

func ensureUp(h *netlink.Handle, link netlink.Link) error {
	if link.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", link.Attrs().Name, err)
	}
	return nil
}

func isDefault(d *net.IPNet) bool {
	if d == nil {
		return true
	}
	ones, _ := d.Mask.Size()
	return ones == 0
}

// ensureRoute makes the main table hold route r (matched on destination;
// gateway, device and scope must agree or the route is replaced).
func ensureRoute(h *netlink.Handle, r *netlink.Route) error {
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, have := range routes {
		sameDst := (isDefault(r.Dst) && isDefault(have.Dst)) ||
			(!isDefault(r.Dst) && have.Dst != nil && have.Dst.String() == r.Dst.String())
		if !sameDst {
			continue
		}
		if have.LinkIndex == r.LinkIndex && have.Gw.Equal(r.Gw) && have.Scope == r.Scope {
			return nil
		}
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("route %v via %v dev #%d: %w", r.Dst, r.Gw, r.LinkIndex, err)
	}
	return nil
}

func isVeth(l netlink.Link) bool {
	_, ok := l.(*netlink.Veth)
	return ok
}

// paired reports whether a (seen from its namespace) and b (seen from its
// namespace) are the two ends of one veth.
func paired(a, b netlink.Link) bool {
	return a != nil && b != nil && isVeth(a) && isVeth(b) &&
		a.Attrs().ParentIndex == b.Attrs().Index && b.Attrs().ParentIndex == a.Attrs().Index
}
