package cluster

import (
	"hash/fnv"
	"slices"
)

// score is the rendezvous weight of id for key: FNV-1a of both, mixed by
// the splitmix64 finalizer so that similar ids spread evenly.
func score(key, id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(id))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Rank orders hosts for key, best first (highest score; ties by id).
func Rank(key string, hosts []Host) []Host {
	out := slices.Clone(hosts)
	slices.SortFunc(out, func(a, b Host) int {
		sa, sb := score(key, a.ID), score(key, b.ID)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}
