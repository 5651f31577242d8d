package vpc

import (
	"encoding/binary"
	"net/netip"
)

// Prefix-length limits of VPC and subnet CIDR blocks, as on EC2.
const (
	MinPrefixLen = 16
	MaxPrefixLen = 28
)

// ReservedPerSubnet is how many addresses of every subnet are not
// assignable: the network address, the next three (router, DNS, future)
// and the broadcast address.
const ReservedPerSubnet = 5

// parseCIDR parses an IPv4 CIDR block whose host bits are zero.
func parseCIDR(param, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, missing(param)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, invalidValue(param, s, "This is not a valid IPv4 CIDR block (for example 10.0.0.0/16).")
	}
	if p.Masked() != p {
		return netip.Prefix{}, invalidValue(param, s, "The CIDR block has host bits set; did you mean "+p.Masked().String()+"?")
	}
	return p, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// size is the number of addresses in p.
func size(p netip.Prefix) int { return 1 << (32 - p.Bits()) }

// contains reports whether inner lies entirely inside outer.
func contains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// GatewayAddress is the subnet's router address (network + 1).
func GatewayAddress(p netip.Prefix) netip.Addr { return addr(u32(p.Masked().Addr()) + 1) }

// UsableAddresses is the number of assignable addresses of a subnet.
func UsableAddresses(p netip.Prefix) int { return size(p) - ReservedPerSubnet }

// assignable reports whether a is inside p and not one of its reserved addresses.
func assignable(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) {
		return false
	}
	off := u32(a) - u32(p.Masked().Addr())
	return off >= 4 && int(off) < size(p)-1
}

// allocate takes an address of rec's subnet for owner: want if it is valid
// (and free), otherwise the lowest free one. rec is modified in place.
func (rec *ipamRecord) allocate(owner string, want netip.Addr) (netip.Addr, error) {
	p, err := netip.ParsePrefix(rec.CidrBlock)
	if err != nil {
		return netip.Addr{}, errf(CodeInvalidParameterValue, "subnet %s has a corrupt CIDR %q", rec.SubnetID, rec.CidrBlock)
	}
	if rec.Allocated == nil {
		rec.Allocated = map[string]string{}
	}
	if want.IsValid() {
		if !p.Contains(want) {
			return netip.Addr{}, errf(CodeInvalidParameterValue, "Address %s does not fall within the subnet's address range %s", want, p)
		}
		if !assignable(p, want) {
			return netip.Addr{}, errf(CodeInvalidParameterValue, "Address %s is in subnet's reserved address range (the first four and the last address of %s are reserved)", want, p)
		}
		if o, used := rec.Allocated[want.String()]; used {
			return netip.Addr{}, errf(CodeIPInUse, "The specified address %s is already in use in subnet %s (by %s); choose another address or omit PrivateIpAddress", want, rec.SubnetID, o)
		}
		rec.Allocated[want.String()] = owner
		return want, nil
	}
	if len(rec.Allocated) < UsableAddresses(p) {
		base := u32(p.Addr())
		for off := uint32(4); int(off) < size(p)-1; off++ {
			a := addr(base + off)
			if _, used := rec.Allocated[a.String()]; !used {
				rec.Allocated[a.String()] = owner
				return a, nil
			}
		}
	}
	return netip.Addr{}, errf(CodeInsufficientFreeAddresses, "There are not enough free addresses in subnet '%s' (%s) to satisfy the requested number of instances; delete unused network interfaces or use a larger subnet", rec.SubnetID, p)
}

// release frees a (if owned by owner, or any owner when owner is empty).
func (rec *ipamRecord) release(a, owner string) bool {
	o, ok := rec.Allocated[a]
	if !ok || (owner != "" && o != owner) {
		return false
	}
	delete(rec.Allocated, a)
	return true
}

func (rec *ipamRecord) available() int {
	p, err := netip.ParsePrefix(rec.CidrBlock)
	if err != nil {
		return 0
	}
	return UsableAddresses(p) - len(rec.Allocated)
}
