package nft

import "net/netip"

// ExcludeAddrs returns ps without the given addresses: a prefix holding
// one is split into the largest prefixes that do not (at most 32 per
// address).
func ExcludeAddrs(ps []netip.Prefix, addrs ...netip.Addr) []netip.Prefix {
	out := append([]netip.Prefix(nil), ps...)
	for _, a := range addrs {
		var next []netip.Prefix
		for _, p := range out {
			next = append(next, excludeOne(p.Masked(), a)...)
		}
		out = next
	}
	return out
}

func excludeOne(p netip.Prefix, a netip.Addr) []netip.Prefix {
	if !p.Contains(a) {
		return []netip.Prefix{p}
	}
	if p.Bits() == p.Addr().BitLen() {
		return nil
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	b := p.Addr().As4()
	bit := p.Bits()
	b[bit/8] |= 0x80 >> (bit % 8)
	hi := netip.PrefixFrom(netip.AddrFrom4(b), p.Bits()+1)
	return append(excludeOne(lo, a), excludeOne(hi, a)...)
}
