package nft

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/google/nftables"
)

type span struct{ lo, hi uint64 } // inclusive, IPv4 as integers

// mergePrefixes turns IPv4 prefixes into sorted, disjoint, non-adjacent
// ranges (the kernel rejects overlapping interval elements).
func mergePrefixes(ps []netip.Prefix) []span {
	var s []span
	for _, p := range ps {
		if !p.IsValid() || !p.Addr().Is4() {
			continue
		}
		p = p.Masked()
		a := p.Addr().As4()
		lo := uint64(binary.BigEndian.Uint32(a[:]))
		s = append(s, span{lo, lo + (uint64(1) << (32 - p.Bits())) - 1})
	}
	slices.SortFunc(s, func(a, b span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var out []span
	for _, x := range s {
		if n := len(out); n > 0 && x.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	return out
}

func u32(v uint64) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(v))
	return b
}

// intervalElements encodes prefixes as nftables interval set elements: a
// start element per range and an interval-end element at the first address
// after it (omitted when the range runs to 255.255.255.255).
func intervalElements(ps []netip.Prefix) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range mergePrefixes(ps) {
		out = append(out, nftables.SetElement{Key: u32(r.lo)})
		if r.hi < 0xffffffff {
			out = append(out, nftables.SetElement{Key: u32(r.hi + 1), IntervalEnd: true})
		}
	}
	return out
}

// elementKeys is a comparable form of interval set elements.
func elementKeys(els []nftables.SetElement) []string {
	out := make([]string, 0, len(els))
	for _, e := range els {
		k := netip.AddrFrom4([4]byte(append(make([]byte, 0, 4), e.Key[:4]...))).String()
		if e.IntervalEnd {
			k += "/end"
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
