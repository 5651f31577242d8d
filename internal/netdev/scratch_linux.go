package netdev

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// NewScratchNetns creates a fresh named network namespace, prefix plus
// eight random hex digits, with lo up and each of addrs (host addresses)
// on lo. Tests and benchmarks use it for namespaces that stand in for "the
// internet" or a peer. A name that is already taken (another run's
// leftover, or a collision) is never reused: another suffix is drawn. It
// returns the name and a function that deletes the namespace.
func NewScratchNetns(prefix string, addrs ...netip.Addr) (string, func() error, error) {
	if err := ensureNetnsRunDir(); err != nil {
		return "", nil, err
	}
	for range 8 {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name := prefix + hex.EncodeToString(b)
		err := newNetnsDo(name, nil, func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))}); err != nil {
					return fmt.Errorf("add %s to lo: %w", a, err)
				}
			}
			return nil
		})
		if errors.Is(err, errNetnsExists) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return name, func() error { return deleteNamedNetns(name) }, nil
	}
	return "", nil, fmt.Errorf("netdev: no free namespace name with prefix %q after 8 tries; remove leftovers with 'ip netns list'", prefix)
}
