package vpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// recover finishes, or undoes, what a crash interrupted: operations here
// write several records one after the other (CreateVpc: the default
// group's name, the group, the main route table, the VPC; DeleteSubnet:
// the IPAM record marked, the subnet, the VPC's registry entry, the IPAM
// record; CreateInterface: an address, then the interface; ...), and a
// process killed between two of them leaves records no request can reach
// or remove (a VPC stuck "deleting" that DescribeVpcs still lists, a
// registry entry that keeps DeleteVpc refusing for a subnet that does not
// exist, an address allocated to no interface). Open calls it, before the
// server serves: records are only ever completed towards what the
// interrupted request would have done (a delete is finished) or removed
// when the request never completed (a create without its last record).
//
// It assumes no other process writes the VPC records meanwhile (one
// server per store, as today; several hosts must run it from one of them).
func (m *Model) recover(ctx context.Context) error {
	var errs []error
	// DeleteVpc marked the VPC "deleting", then deletes its default group
	// (and name), main route table, NAT gateway records and the VPC.
	vpcs, err := list(ctx, m.vpcs, "")
	if err != nil {
		return err
	}
	live := map[string]*VPC{}
	for _, v := range vpcs {
		if v.State != "deleting" {
			live[v.ID] = v
			continue
		}
		m.log.Info("finishing an interrupted VPC deletion", "account", v.AccountID, "vpc", v.ID)
		errs = append(errs, m.finishDeleteVPC(ctx, v))
	}

	// Subnets: CreateSubnet registers the subnet on its VPC, creates the
	// IPAM record, then the subnet; DeleteSubnet marks the IPAM record
	// deleted, deletes the subnet, unregisters it, deletes the IPAM record.
	ipams, err := m.ipam.List(ctx, ">")
	if err != nil {
		return err
	}
	subs, err := list(ctx, m.subs, "")
	if err != nil {
		return err
	}
	subnet := map[string]*Subnet{}
	for _, s := range subs {
		subnet[s.ID] = s
	}
	ipamOf := map[string]bool{}
	for _, e := range ipams {
		r := e.Value
		acct, _, _ := strings.Cut(e.Key, ".")
		s := subnet[r.SubnetID]
		if !r.Deleted && s != nil {
			ipamOf[r.SubnetID] = true
			continue
		}
		if r.Deleted && s != nil {
			m.log.Info("finishing an interrupted subnet deletion", "account", acct, "subnet", r.SubnetID)
			errs = append(errs, m.subs.Delete(ctx, key(acct, r.SubnetID)))
			delete(subnet, r.SubnetID)
		} else if !r.Deleted {
			m.log.Info("removing the address record of a subnet whose creation was interrupted", "account", acct, "subnet", r.SubnetID)
		}
		errs = append(errs, m.ipam.Delete(ctx, e.Key))
	}
	for _, s := range subnet {
		if !ipamOf[s.ID] { // never: the IPAM record is created first
			m.log.Warn("subnet without an address record: creating an empty one", "account", s.AccountID, "subnet", s.ID)
			_, err := m.ipam.Create(ctx, key(s.AccountID, s.ID), &ipamRecord{SubnetID: s.ID, CidrBlock: s.CidrBlock})
			errs = append(errs, err)
		}
	}
	for _, v := range live {
		var gone []string
		for sid := range v.Subnets {
			if subnet[sid] == nil {
				gone = append(gone, sid)
			}
		}
		if len(gone) == 0 {
			continue
		}
		m.log.Info("unregistering subnets that do not exist from their VPC", "account", v.AccountID, "vpc", v.ID, "subnets", gone)
		_, err := update(ctx, m.vpcs, v.AccountID, v.ID, nfVPC, func(v *VPC) error {
			for _, sid := range gone {
				delete(v.Subnets, sid)
			}
			return nil
		})
		errs = append(errs, err)
	}

	// Groups and route tables of no VPC (a CreateVpc interrupted before
	// its VPC record, or a group created while its VPC was deleted); group
	// names of no group (a CreateSecurityGroup interrupted before the
	// group, a DeleteSecurityGroup before the name).
	groups, err := list(ctx, m.sgs, "")
	if err != nil {
		return err
	}
	group := map[string]bool{}
	for _, g := range groups {
		if live[g.VpcID] == nil {
			m.log.Info("deleting a security group of no VPC", "account", g.AccountID, "group", g.ID, "vpc", g.VpcID)
			errs = append(errs, m.sgs.Delete(ctx, key(g.AccountID, g.ID)))
			continue
		}
		group[g.ID] = true
	}
	names, err := m.names.List(ctx, ">")
	if err != nil {
		return err
	}
	for _, e := range names {
		if !group[e.Value.GroupID] {
			errs = append(errs, m.names.Delete(ctx, e.Key))
		}
	}
	rts, err := list(ctx, m.rtbs, "")
	if err != nil {
		return err
	}
	for _, rt := range rts {
		if live[rt.VpcID] == nil {
			m.log.Info("deleting a route table of no VPC", "account", rt.AccountID, "rtb", rt.ID, "vpc", rt.VpcID)
			errs = append(errs, m.rtbs.Delete(ctx, key(rt.AccountID, rt.ID)))
		}
	}

	// NAT gateway interfaces without their available NAT gateway
	// (CreateNatGateway creates the interface, then the gateway;
	// DeleteNatGateway marks the gateway deleted, then deletes it).
	nats, err := list(ctx, m.nats, "")
	if err != nil {
		return err
	}
	natENI := map[string]bool{}
	for _, n := range nats {
		if n.State != NatStateDeleted {
			natENI[n.NetworkInterfaceID] = true
		}
	}
	enis, err := list(ctx, m.enis, "")
	if err != nil {
		return err
	}
	for _, n := range enis {
		if n.InterfaceType == InterfaceTypeNAT && !natENI[n.ID] {
			m.log.Info("deleting the interface of no NAT gateway", "account", n.AccountID, "eni", n.ID)
			errs = append(errs, m.DeleteInterface(ctx, n.AccountID, n.ID))
		}
	}

	// Addresses of no interface: CreateInterface allocates, then records
	// the interface; DeleteInterface deletes the record, then releases.
	if enis, err = list(ctx, m.enis, ""); err != nil {
		return err
	}
	owner := map[string]bool{}
	for _, n := range enis {
		owner[n.ID] = true
	}
	if ipams, err = m.ipam.List(ctx, ">"); err != nil {
		return err
	}
	for _, e := range ipams {
		var stale []string
		for a, o := range e.Value.Allocated {
			if !owner[o] {
				stale = append(stale, a+" ("+o+")")
			}
		}
		if len(stale) == 0 {
			continue
		}
		m.log.Info("releasing addresses of interfaces that do not exist", "subnet", e.Value.SubnetID, "addresses", stale)
		_, _, err := m.ipam.Update(ctx, e.Key, func(r *ipamRecord) error {
			for a, o := range r.Allocated {
				if !owner[o] {
					delete(r.Allocated, a)
				}
			}
			return nil
		})
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vpc: recovering interrupted operations: %w", err)
	}
	return nil
}

// finishDeleteVPC does what DeleteVPC does after marking the VPC deleting.
func (m *Model) finishDeleteVPC(ctx context.Context, v *VPC) error {
	errs := []error{
		m.sgs.Delete(ctx, key(v.AccountID, v.DefaultSecurityGroupID)),
		m.names.Delete(ctx, groupNameKey(v.AccountID, v.ID, DefaultGroupName)),
		m.rtbs.Delete(ctx, key(v.AccountID, v.MainRouteTableID)),
	}
	nats, err := list(ctx, m.nats, v.AccountID)
	errs = append(errs, err)
	for _, n := range nats {
		if n.VpcID == v.ID {
			errs = append(errs, m.nats.Delete(ctx, key(v.AccountID, n.ID)))
		}
	}
	if v.VNI != 0 {
		errs = append(errs, m.vnis.Delete(ctx, vniKey(v.VNI)))
	}
	errs = append(errs, m.vpcs.Delete(ctx, key(v.AccountID, v.ID)))
	return errors.Join(errs...)
}
