package vpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Bucket names of the model's tables.
const (
	bucketVPCs       = "vpc_vpcs"
	bucketSubnets    = "vpc_subnets"
	bucketIPAM       = "vpc_ipam"
	bucketGroups     = "vpc_security_groups"
	bucketGroupNames = "vpc_security_group_names"
	bucketInterfaces = "vpc_network_interfaces"
	bucketRouteTabs  = "vpc_route_tables"
	bucketIGWs       = "vpc_internet_gateways"
	bucketNATs       = "vpc_nat_gateways"
	bucketVNIs       = "vpc_vnis"
)

// Model is the VPC model over the store. It is safe for concurrent use, also
// by several processes sharing one store.
type Model struct {
	vpcs   *store.Table[VPC]
	subs   *store.Table[Subnet]
	ipam   *store.Table[ipamRecord]
	sgs    *store.Table[SecurityGroup]
	names  *store.Table[nameIndex]
	enis   *store.Table[NetworkInterface]
	rtbs   *store.Table[RouteTable]
	igws   *store.Table[InternetGateway]
	nats   *store.Table[NatGateway]
	vnis   *store.Table[vniIndex]
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex
	nextID int
	subscr map[int]chan struct{}
	mirror *mirror // set by Watch: Desired reads it instead of the store
	home   string  // SetHome: the home of interfaces created here
}

// Open opens (creating when needed) the model's tables in st, and
// completes or undoes the operations a crash interrupted (recover).
func Open(ctx context.Context, st *store.Store, log *slog.Logger) (*Model, error) {
	if log == nil {
		log = slog.Default()
	}
	m := &Model{log: log, now: time.Now, subscr: map[int]chan struct{}{}}
	var err error
	open := func(name string, f func() error) {
		if err == nil {
			if e := f(); e != nil {
				err = fmt.Errorf("vpc: open %s: %w", name, e)
			}
		}
	}
	open(bucketVPCs, func() (e error) { m.vpcs, e = store.NewTable[VPC](ctx, st, bucketVPCs); return })
	open(bucketSubnets, func() (e error) { m.subs, e = store.NewTable[Subnet](ctx, st, bucketSubnets); return })
	open(bucketIPAM, func() (e error) { m.ipam, e = store.NewTable[ipamRecord](ctx, st, bucketIPAM); return })
	open(bucketGroups, func() (e error) { m.sgs, e = store.NewTable[SecurityGroup](ctx, st, bucketGroups); return })
	open(bucketGroupNames, func() (e error) { m.names, e = store.NewTable[nameIndex](ctx, st, bucketGroupNames); return })
	open(bucketInterfaces, func() (e error) { m.enis, e = store.NewTable[NetworkInterface](ctx, st, bucketInterfaces); return })
	open(bucketRouteTabs, func() (e error) { m.rtbs, e = store.NewTable[RouteTable](ctx, st, bucketRouteTabs); return })
	open(bucketIGWs, func() (e error) { m.igws, e = store.NewTable[InternetGateway](ctx, st, bucketIGWs); return })
	open(bucketNATs, func() (e error) { m.nats, e = store.NewTable[NatGateway](ctx, st, bucketNATs); return })
	open(bucketVNIs, func() (e error) { m.vnis, e = store.NewTable[vniIndex](ctx, st, bucketVNIs); return })
	if err != nil {
		return nil, err
	}
	if err := m.recover(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// Subscribe returns a channel that receives a value after successful
// mutations made through this Model (coalesced: one pending signal at
// most), and a function that ends the subscription. A reconciler calls
// Desired after each signal.
func (m *Model) Subscribe() (<-chan struct{}, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.nextID
	m.nextID++
	ch := make(chan struct{}, 1)
	m.subscr[id] = ch
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.subscr, id)
	}
}

func (m *Model) changed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range m.subscr {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// get reads an account's record, mapping absence to the typed not-found error.
func get[T any](ctx context.Context, t *store.Table[T], accountID, id string, nf func(id string) *Error) (*T, uint64, error) {
	v, rev, err := t.Get(ctx, key(accountID, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nf(id)
	}
	if err != nil {
		return nil, 0, err
	}
	return v, rev, nil
}

// update applies fn to an account's record with revision-checked retries.
func update[T any](ctx context.Context, t *store.Table[T], accountID, id string, nf func(id string) *Error, fn func(*T) error) (*T, error) {
	v, _, err := t.Update(ctx, key(accountID, id), fn)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nf(id)
	}
	return v, err
}

// list returns all records of an account ("" = all accounts).
func list[T any](ctx context.Context, t *store.Table[T], accountID string) ([]*T, error) {
	filter := ">"
	if accountID != "" {
		filter = accountID + ".>"
	}
	es, err := t.List(ctx, filter)
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(es))
	for _, e := range es {
		out = append(out, e.Value)
	}
	return out, nil
}

func nfVPC(id string) *Error {
	return errf(CodeVpcNotFound, "The vpc ID '%s' does not exist", id)
}
func nfSubnet(id string) *Error {
	return errf(CodeSubnetNotFound, "The subnet ID '%s' does not exist", id)
}
func nfGroup(id string) *Error {
	return errf(CodeGroupNotFound, "The security group '%s' does not exist", id)
}
func nfInterface(id string) *Error {
	return errf(CodeInterfaceNotFound, "The networkInterface ID '%s' does not exist", id)
}
func nfRouteTable(id string) *Error {
	return errf(CodeRouteTableNotFound, "The routeTable ID '%s' does not exist", id)
}
func nfIGW(id string) *Error {
	return errf(CodeGatewayNotFound, "The internetGateway ID '%s' does not exist", id)
}
func nfNAT(id string) *Error {
	return errf(CodeNatGatewayNotFound, "The Nat Gateway %s was not found", id)
}
