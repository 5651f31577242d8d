package netdev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RepairKind names a kind of kernel object a repair pass converged again
// after finding it missing or different from what was applied.
type RepairKind string

// Kinds of repairs (a fixed set: metrics label values).
const (
	RepairServiceNetns RepairKind = "service_netns" // the service router namespace
	RepairServiceNft   RepairKind = "service_nft"   // the service router's nft table
	RepairHostNft      RepairKind = "host_nft"      // the host's nft table (uplink in the host)
	RepairUplink       RepairKind = "uplink"        // the uplink veth, its addresses or default route
	RepairPoolNetns    RepairKind = "pool_netns"    // a pooled environment namespace (dropped; the pool refills)
	RepairEnvLink      RepairKind = "env_link"      // an environment's veth into the service router
	RepairVPCNetns     RepairKind = "vpc_netns"     // a VPC router namespace
	RepairVPCNft       RepairKind = "vpc_nft"       // a VPC router's nft table, its chains or interface maps
	RepairVPCLink      RepairKind = "vpc_link"      // a VPC's internet-gateway or hyperplane veth
	RepairENIAddress   RepairKind = "eni_address"   // a Hyperplane ENI or subnet gateway address of a VPC router
	RepairENIMap       RepairKind = "eni_map"       // env2eni / eni_snat / eni_egress, or an attached environment's rule
	RepairSGSet        RepairKind = "sg_set"        // a security group's member set
	RepairNAT          RepairKind = "nat"           // a NAT gateway's table or the VPC's NAT address set
	RepairInterface    RepairKind = "interface"     // a network interface's namespace, veth or address
	RepairAPIEndpoint  RepairKind = "api_endpoint"  // the platform endpoint's namespace (mounted back), veth or address
)

// RepairKinds lists every RepairKind.
func RepairKinds() []RepairKind {
	return []RepairKind{RepairServiceNetns, RepairServiceNft, RepairHostNft, RepairUplink, RepairPoolNetns, RepairEnvLink,
		RepairVPCNetns, RepairVPCNft, RepairVPCLink, RepairENIAddress, RepairENIMap, RepairSGSet, RepairNAT, RepairInterface, RepairAPIEndpoint}
}

// repaired logs and reports one repair.
func (r *Router) repaired(kind RepairKind, object string) {
	r.log.Warn("kernel object repaired", "kind", string(kind), "object", object)
	if r.cfg.OnRepair != nil {
		r.cfg.OnRepair(kind, object)
	}
}

// Repair compares the service side with its desired state and converges
// what differs, reporting every repair (Config.OnRepair, log): the
// service router namespace (a replaced one is rebuilt as Setup does, with
// every environment re-plumbed into it), the uplink, the host and service
// router nft tables, the platform endpoint (its namespace mounted back,
// its veth re-plumbed), pooled environments whose namespace is gone (dropped;
// the refill replaces them) and environments whose veth is gone. When
// nothing differs it only reads, holding the kernel lock shared, so cold
// starts go on meanwhile. The VPC side is VPCs.Verify's.
func (r *Router) Repair(ctx context.Context) error {
	r.mu.Lock()
	closed, setup := r.closed, r.isSetup
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !setup {
		return ErrNotSetup
	}
	r.kmu.RLock()
	same := sameNsAsPath(r.svcNs, r.SvcNetnsPath())
	r.kmu.RUnlock()
	if !same {
		r.repaired(RepairServiceNetns, svcName(r.cfg.Prefix))
		return r.setup(ctx, false)
	}
	r.kmu.RLock()
	defer r.kmu.RUnlock()
	if r.svcH == nil {
		return ErrNotSetup
	}
	var errs []error
	if ok, err := r.uplinkIntact(); err != nil {
		errs = append(errs, fmt.Errorf("check uplink: %w", err))
	} else if !ok {
		r.repaired(RepairUplink, UplinkName+" <-> "+hostLinkName(r.cfg.Prefix))
		errs = append(errs, r.ensureUplink())
	}
	if changed, err := r.applyHost(); err != nil {
		errs = append(errs, fmt.Errorf("host nft table: %w", err))
	} else if changed {
		r.repaired(RepairHostNft, "table ip "+hostTableName(r.cfg.Prefix))
	}
	if changed, err := r.applyNft(); err != nil {
		errs = append(errs, fmt.Errorf("service router nft table: %w", err))
	} else if changed {
		r.repaired(RepairServiceNft, "table ip "+r.cfg.Prefix+" in "+svcName(r.cfg.Prefix))
	}
	if ok, err := r.apiIntact(); err != nil {
		errs = append(errs, fmt.Errorf("check the API endpoint: %w", err))
	} else if !ok {
		r.repaired(RepairAPIEndpoint, apiNetnsName(r.cfg.Prefix))
		errs = append(errs, r.ensureAPI())
	}
	errs = append(errs, r.repairEnvs())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netdev: repair %s: %w", r.cfg.Prefix, err)
	}
	return nil
}

// uplinkIntact reports whether the uplink is as ensureUplink leaves it:
// a veth pair, both ends up with their addresses, the default route.
// Caller holds kmu.
func (r *Router) uplinkIntact() (bool, error) {
	outNs, err := netns.GetFromPath(r.outsidePath())
	if err != nil {
		return false, err
	}
	defer outNs.Close()
	outH, err := netlink.NewHandleAt(outNs)
	if err != nil {
		return false, err
	}
	defer outH.Close()
	svcL, err := linkByName(r.svcH, UplinkName)
	if err != nil {
		return false, err
	}
	outL, err := linkByName(outH, hostLinkName(r.cfg.Prefix))
	if err != nil {
		return false, err
	}
	if !paired(svcL, outL) || svcL.Attrs().Flags&net.FlagUp == 0 || outL.Attrs().Flags&net.FlagUp == 0 {
		return false, nil
	}
	svcAddr, outAddr := uplinkAddrs(r.cfg.UplinkNet)
	for _, c := range []struct {
		h *netlink.Handle
		l netlink.Link
		a string
	}{{r.svcH, svcL, svcAddr.String()}, {outH, outL, outAddr.String()}} {
		if ok, err := hasAddr(c.h, c.l, c.a); err != nil || !ok {
			return false, err
		}
	}
	routes, err := r.svcH.RouteList(svcL, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, rt := range routes {
		if isDefault(rt.Dst) && rt.Gw.Equal(outAddr.Addr().AsSlice()) {
			return true, nil
		}
	}
	return false, nil
}

func hasAddr(h *netlink.Handle, l netlink.Link, prefix string) (bool, error) {
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if a.IPNet != nil && a.IPNet.String() == prefix {
			return true, nil
		}
	}
	return false, nil
}

// repairEnvs drops pooled environments whose namespace is gone and
// re-plumbs environments whose veth is gone. It never removes what it does
// not know (environments being built are not known yet); Setup sweeps.
// Caller holds kmu shared.
func (r *Router) repairEnvs() error {
	r.mu.Lock()
	envs := slices.Clone(r.pool)
	for _, e := range r.taken {
		envs = append(envs, e)
	}
	r.mu.Unlock()
	if len(envs) == 0 {
		return nil
	}
	links, err := r.svcH.LinkList()
	if err != nil {
		return fmt.Errorf("list service router links: %w", err)
	}
	have := map[string]bool{}
	for _, l := range links {
		have[l.Attrs().Name] = true
	}
	var errs []error
	for _, e := range envs {
		if !isNetnsMount(e.Path) {
			errs = append(errs, r.dropGoneEnv(e))
			continue
		}
		if have[e.HostLink] || !r.knows(e) {
			continue
		}
		r.repaired(RepairEnvLink, e.HostLink+" <-> "+e.Name)
		if err := r.plumbEnv(e, false); err != nil && r.knows(e) {
			errs = append(errs, fmt.Errorf("repair %s: %w", e.Name, err))
		}
	}
	return errors.Join(errs...)
}

// knows reports whether e is still pooled or taken.
func (r *Router) knows(e *EnvNet) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.taken[e.Name] == e || slices.Contains(r.pool, e)
}

// dropGoneEnv handles a known environment whose namespace is gone: a
// pooled one leaves the pool (its link and address are freed, the refill
// builds another); a taken one is left to its owner (its process holds
// the namespace; Release frees the rest). Caller holds kmu.
func (r *Router) dropGoneEnv(e *EnvNet) error {
	r.mu.Lock()
	i := slices.Index(r.pool, e)
	if i >= 0 {
		r.pool = slices.Delete(r.pool, i, i+1)
	}
	r.mu.Unlock()
	if i < 0 {
		return nil
	}
	r.repaired(RepairPoolNetns, e.Name)
	err := r.destroyEnv(e)
	r.poke()
	return err
}

// Owns reports whether name is a namespace this router believes exists:
// the service router, the platform endpoint or a pooled or taken
// environment.
func (r *Router) Owns(name string) bool {
	if name == svcName(r.cfg.Prefix) || name == apiNetnsName(r.cfg.Prefix) {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.taken[name] != nil {
		return true
	}
	return slices.ContainsFunc(r.pool, func(e *EnvNet) bool { return e.Name == name })
}

// WatchNetnsRemovals calls fn with the name of every <prefix>-* namespace
// removed from /run/netns (inotify: "ip netns del" unlinks the file) until
// ctx ends. fn runs on the watching goroutine and must not block.
func WatchNetnsRemovals(ctx context.Context, prefix string, fn func(name string)) error {
	if err := ensureNetnsRunDir(); err != nil {
		return fmt.Errorf("netdev: %w", err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("netdev: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, netnsRunDir, unix.IN_DELETE|unix.IN_MOVED_FROM); err != nil {
		unix.Close(fd)
		return fmt.Errorf("netdev: watch %s: %w", netnsRunDir, err)
	}
	f := os.NewFile(uintptr(fd), "inotify "+netnsRunDir) // non-blocking: reads go through the poller
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nameLen := int(ev.Len)
				start := off + unix.SizeofInotifyEvent
				off = start + nameLen
				if off > n {
					break
				}
				name := strings.TrimRight(string(buf[start:start+nameLen]), "\x00")
				if strings.HasPrefix(name, prefix+"-") {
					fn(name)
				}
			}
		}
	}()
	return nil
}
