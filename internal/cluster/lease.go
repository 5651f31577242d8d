package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/nats-io/nats.go/jetstream"
)

const slicesBucket = "cluster_slices"

// SliceBits is the size of each host's slice of the service CIDR: a /20
// (4,096 environment addresses).
const SliceBits = 20

type sliceRec struct {
	Host   string `json:"host"`
	Prefix string `json:"prefix"`
}

// Slices splits cidr into its /bits slices, in address order.
func Slices(cidr netip.Prefix, bits int) ([]netip.Prefix, error) {
	cidr = cidr.Masked()
	if !cidr.Addr().Is4() {
		return nil, fmt.Errorf("--service-cidr %s: an IPv4 CIDR is needed", cidr)
	}
	if cidr.Bits() > bits {
		return nil, fmt.Errorf("--service-cidr %s is smaller than one host's slice (/%d): use a /%d or larger", cidr, bits, bits)
	}
	n := 1 << (bits - cidr.Bits())
	if n > 4096 {
		n = 4096
	}
	out := make([]netip.Prefix, 0, n)
	a := cidr.Addr()
	step := uint32(1) << (32 - bits)
	for i := 0; i < n; i++ {
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v += uint32(i) * step
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits))
	}
	return out, nil
}

// LeaseSlice gives host its slice of the cluster-wide service CIDR: the
// one it held before if any, else the first free one, recorded in the
// bucket cluster_slices (created revision-checked, so two hosts never
// take the same slice).
func LeaseSlice(ctx context.Context, js jetstream.JetStream, replicas int, host string, cidr netip.Prefix) (netip.Prefix, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: slicesBucket, History: 1, Storage: jetstream.FileStorage, Replicas: max(1, replicas),
	})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("open bucket %s: %w", slicesBucket, err)
	}
	all, err := Slices(cidr, SliceBits)
	if err != nil {
		return netip.Prefix{}, err
	}
	key := func(p netip.Prefix) string { return fmt.Sprintf("s%08x", p.Addr().As4()) }
	// The slice this host held before.
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("read service CIDR slices: %w", err)
	}
	var held netip.Prefix
	for e := range w.Updates() {
		if e == nil {
			break
		}
		var r sliceRec
		if json.Unmarshal(e.Value(), &r) == nil && r.Host == host {
			if p, err := netip.ParsePrefix(r.Prefix); err == nil && cidr.Contains(p.Addr()) {
				held = p
			}
		}
	}
	_ = w.Stop()
	if held.IsValid() {
		return held, nil
	}
	for _, p := range all {
		b, _ := json.Marshal(sliceRec{Host: host, Prefix: p.String()})
		if _, err := kv.Create(ctx, key(p), b); err == nil {
			return p, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return netip.Prefix{}, fmt.Errorf("lease service CIDR slice %s: %w", p, err)
		}
	}
	return netip.Prefix{}, fmt.Errorf("--service-cidr %s has no free /%d slice left for host %s (%d hosts hold them all): use a larger CIDR", cidr, SliceBits, host, len(all))
}
