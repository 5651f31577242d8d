package vpc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Several hosts. A VPC's routers on several hosts are joined by a VXLAN
// tunnel whose VNI is stored on the VPC record and unique in the store (an
// index record per VNI, created with Create, so two hosts creating VPCs at
// once never share one). Every network interface names its home host: the
// host that created it (SetHome) or attached it to an instance, or the one
// the leader moved it to when its home died (RehomeInterfaces, same id and
// address). On a single host both stay at their zero values for
// interfaces ("" home), and the VNI is simply unused.

// MaxVNI is the largest VXLAN network identifier.
const MaxVNI = 1<<24 - 1

type vniIndex struct {
	Account string `json:"account"`
	VpcID   string `json:"vpc"`
}

func vniKey(vni uint32) string { return "n" + strconv.FormatUint(uint64(vni), 10) }

// allocVNI takes a free VNI for a VPC: a hash of its id, then the next
// free one.
func (m *Model) allocVNI(ctx context.Context, account, vpcID string) (uint32, error) {
	h := fnv.New32a()
	h.Write([]byte(account + "/" + vpcID))
	vni := h.Sum32()%MaxVNI + 1
	for range 4096 {
		_, err := m.vnis.Create(ctx, vniKey(vni), &vniIndex{Account: account, VpcID: vpcID})
		if err == nil {
			return vni, nil
		}
		if !errors.Is(err, store.ErrExists) {
			return 0, fmt.Errorf("vpc: reserve VNI %d for %s: %w", vni, vpcID, err)
		}
		vni = vni%MaxVNI + 1
	}
	return 0, fmt.Errorf("vpc: no free VNI near %d for %s after 4096 tries", vni, vpcID)
}

// EnsureVNIs gives every VPC without a VNI (made before VNIs existed) one;
// it returns how many it gave. The leader runs it.
func (m *Model) EnsureVNIs(ctx context.Context) (int, error) {
	vs, err := list(ctx, m.vpcs, "")
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, v := range vs {
		if v.VNI != 0 || v.State == "deleting" {
			continue
		}
		vni, err := m.allocVNI(ctx, v.AccountID, v.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = update(ctx, m.vpcs, v.AccountID, v.ID, nfVPC, func(cur *VPC) error {
			if cur.VNI != 0 {
				return errMovedVNI
			}
			cur.VNI = vni
			return nil
		})
		if err != nil {
			errs = append(errs, m.vnis.Delete(ctx, vniKey(vni)))
			if !errors.Is(err, errMovedVNI) {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	if n > 0 {
		m.changed()
	}
	return n, errors.Join(errs...)
}

var errMovedVNI = errors.New("vpc: VNI given meanwhile")

// SetHome makes id the home of interfaces created through this model
// from now on (a host of a cluster calls it once at start).
func (m *Model) SetHome(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.home = id
}

// Home is the home given to interfaces created here ("" on a single host).
func (m *Model) Home() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.home
}

// SetInterfaceHome moves an interface to host home (an instance attached
// to it runs there).
func (m *Model) SetInterfaceHome(ctx context.Context, accountID, id, home string) error {
	changed := false
	_, err := update(ctx, m.enis, accountID, id, nfInterface, func(n *NetworkInterface) error {
		changed = n.Home != home
		n.Home = home
		return nil
	})
	if err == nil && changed {
		m.changed()
	}
	return err
}

// RehomeInterfaces moves every interface whose home is not alive (or that
// has none, on a cluster) to the host pick(interface id) names: same id,
// same address, new home. The leader calls it when a host dies. It
// returns the moved interfaces' ids.
func (m *Model) RehomeInterfaces(ctx context.Context, alive func(host string) bool, pick func(key string) string) ([]string, error) {
	ns, err := list(ctx, m.enis, "")
	if err != nil {
		return nil, err
	}
	var moved []string
	var errs []error
	for _, n := range ns {
		if n.Home != "" && alive(n.Home) {
			continue
		}
		to := pick(n.ID)
		if to == "" {
			errs = append(errs, fmt.Errorf("vpc: rehome %s: no live host", n.ID))
			continue
		}
		from := n.Home
		_, err := update(ctx, m.enis, n.AccountID, n.ID, nfInterface, func(cur *NetworkInterface) error {
			if cur.Home != from {
				return errMovedVNI
			}
			cur.Home = to
			return nil
		})
		if errors.Is(err, errMovedVNI) || IsCode(err, CodeInterfaceNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("network interface re-homed", "eni", n.ID, "from", from, "to", to)
		moved = append(moved, n.ID)
	}
	if len(moved) > 0 {
		m.changed()
	}
	return moved, errors.Join(errs...)
}
