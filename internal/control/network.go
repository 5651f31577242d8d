package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// RoleChecker answers questions about execution roles (iam.Roles).
type RoleChecker interface {
	TrustsService(ctx context.Context, roleARN, service string) (bool, error)
	RoleAllows(ctx context.Context, accountID, roleARN string, actions []string) (ok bool, missing []string, err error)
}

// VpcLookup finds the VPC of a subnet or security group in an account
// (vpc.Model); an unknown id is an error.
type VpcLookup interface {
	SubnetVPC(ctx context.Context, account, subnetID string) (string, error)
	GroupVPC(ctx context.Context, account, groupID string) (string, error)
}

// Networks holds functions' shares of Hyperplane ENIs (hyperplane.Manager).
// Ensure creates or shares one ENI per subnet for the security-group set;
// its error carries a Lambda state reason code (ReasonOf).
type Networks interface {
	Ensure(ctx context.Context, account, user string, subnetIDs, sgIDs []string) error
	Release(ctx context.Context, account, user string) error
	ReasonOf(err error) string
}

// ShareLister is implemented by Networks that can list the shares they
// hold (account → users), so that shares no function record names (a
// crash between a record's write and the share's release, a function
// deleted while its VPC setup ran) are released: sweepShares.
type ShareLister interface {
	Shares(ctx context.Context) (map[string][]string, error)
}

// vpcActions are what an execution role needs for VpcConfig.
var vpcActions = []string{"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"}

// checkRole: the role exists in the caller's account, trusts Lambda and,
// for a VPC function, may manage network interfaces.
func (s *Service) checkRole(ctx context.Context, acct, role string, vpc bool) error {
	if s.o.Roles == nil {
		return nil
	}
	if !strings.HasPrefix(role, "arn:aws:iam::"+acct+":role/") {
		return invalidParam("The role defined for the function cannot be assumed by Lambda: %s is not a role of account %s.", role, acct)
	}
	ok, err := s.o.Roles.TrustsService(ctx, role, "lambda.amazonaws.com")
	var ie *iam.Error
	if err != nil && !errors.As(err, &ie) {
		// The store did not answer (e.g. a host cut off from its cluster):
		// a failure of ours, not a bad role.
		return fmt.Errorf("read execution role %s: %w", role, err)
	}
	if err != nil || !ok {
		return invalidParam("The role defined for the function cannot be assumed by Lambda. Create %s with a trust policy allowing lambda.amazonaws.com to sts:AssumeRole (aws iam create-role --assume-role-policy-document ...).", role)
	}
	if vpc {
		ok, _, err := s.o.Roles.RoleAllows(ctx, acct, role, vpcActions)
		if err != nil || !ok {
			return invalidParam("The provided execution role does not have permissions to call CreateNetworkInterface on EC2. Attach arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole to %s.", role)
		}
	}
	return nil
}

// authorize asks Options.Authorize about the caller of ctx, with the VPC
// condition keys of v (absent when the request has no VpcConfig).
func (s *Service) authorize(ctx context.Context, action, resource string, v *VpcConfig, extra ...map[string][]string) error {
	if s.o.Authorize == nil {
		return nil
	}
	var cond map[string][]string
	if v != nil {
		cond = map[string][]string{"lambda:VpcIds": {v.VpcID}, "lambda:SubnetIds": v.SubnetIDs, "lambda:SecurityGroupIds": v.SecurityGroupIDs}
	}
	for _, m := range extra { // e.g. the request's tags
		for k, vs := range m {
			if cond == nil {
				cond = map[string][]string{}
			}
			cond[k] = vs
		}
	}
	return s.o.Authorize(ctx, action, resource, cond)
}

// resolveVpc validates a VpcConfig: nil or empty lists mean no VPC.
func (s *Service) resolveVpc(ctx context.Context, acct string, v *VpcInput) (*VpcConfig, error) {
	if v == nil || (len(v.SubnetIds) == 0 && len(v.SecurityGroupIds) == 0) {
		return nil, nil
	}
	if err := validateVpc(&VpcConfig{SubnetIDs: v.SubnetIds, SecurityGroupIDs: v.SecurityGroupIds}); err != nil {
		return nil, err
	}
	if s.o.Vpcs == nil || s.o.Networks == nil {
		return nil, invalidParam("VpcConfig is not available on this lambdaplane server (it runs without a VPC datapath)")
	}
	if len(v.SubnetIds) == 0 {
		return nil, invalidParam("VpcConfig needs at least one subnet: pass SubnetIds=subnet-...")
	}
	if len(v.SecurityGroupIds) == 0 {
		return nil, invalidParam("VpcConfig needs at least one security group: pass SecurityGroupIds=sg-...")
	}
	if v.Ipv6AllowedForDualStack != nil && *v.Ipv6AllowedForDualStack {
		return nil, invalidParam("Ipv6AllowedForDualStack is not supported by lambdaplane (its VPCs are IPv4 only)")
	}
	vpcID := ""
	for _, id := range v.SubnetIds {
		vid, err := s.o.Vpcs.SubnetVPC(ctx, acct, id)
		if err != nil {
			return nil, invalidParam("Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. EC2 Error Message: The subnet ID '%s' does not exist", id)
		}
		if vpcID != "" && vid != vpcID {
			return nil, invalidParam("Subnets %v are in different VPCs; all subnets and security groups of a function must be in one VPC", v.SubnetIds)
		}
		vpcID = vid
	}
	for _, id := range v.SecurityGroupIds {
		vid, err := s.o.Vpcs.GroupVPC(ctx, acct, id)
		if err != nil {
			return nil, invalidParam("Error occurred while DescribeSecurityGroups. EC2 Error Code: InvalidGroup.NotFound. EC2 Error Message: The security group '%s' does not exist", id)
		}
		if vid != vpcID {
			return nil, invalidParam("Security group %s is in %s but the subnets are in %s; all subnets and security groups of a function must be in one VPC", id, vid, vpcID)
		}
	}
	return &VpcConfig{SubnetIDs: dedupe(v.SubnetIds), SecurityGroupIDs: dedupe(v.SecurityGroupIds), VpcID: vpcID}, nil
}

func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// netUser is the ENI-share owner for a function's VPC configuration: the
// function's ARN and a hash of its subnets, groups and creation time, so
// that a function deleted and created again under the same name never
// holds (or releases) the share of the earlier one.
func netUser(region, acct, name string, created time.Time, v *VpcConfig) string {
	subnets := slices.Clone(v.SubnetIDs)
	groups := slices.Clone(v.SecurityGroupIDs)
	sort.Strings(subnets)
	sort.Strings(groups)
	h := sha256.Sum256([]byte(strings.Join(subnets, ",") + "|" + strings.Join(groups, ",") + "|" + strconv.FormatInt(created.UnixNano(), 10)))
	return FunctionARN(region, acct, name) + ":vpc-" + hex.EncodeToString(h[:6])
}

func netUserOf(v *VpcConfig) string {
	if v == nil {
		return ""
	}
	return v.NetUser
}

func setPending(c *Config, reason, msg string) {
	c.State, c.StateReason, c.StateReasonCode = StatePending, msg, reason
	c.LastUpdateStatus, c.LastUpdateStatusReason, c.LastUpdateStatusReasonCode = UpdateInProgress, msg, reason
}

func setUpdating(c *Config, msg string) {
	c.LastUpdateStatus, c.LastUpdateStatusReason, c.LastUpdateStatusReasonCode = UpdateInProgress, msg, "Updating"
}

// netState is the background machinery of VPC functions.
type netState struct {
	mu       sync.Mutex
	running  map[string]bool      // functions being settled
	again    map[string]bool      // settle again when the current run ends
	lastUsed map[string]time.Time // last invoke per function
	wg       sync.WaitGroup
	stop     chan struct{}
}

func (s *Service) startNetwork() {
	s.net = netState{running: map[string]bool{}, again: map[string]bool{}, lastUsed: map[string]time.Time{}, stop: make(chan struct{})}
	if s.o.VpcIdleTimeout == 0 {
		s.o.VpcIdleTimeout = 14 * 24 * time.Hour
	}
	if s.o.SettleTimeout == 0 {
		s.o.SettleTimeout = 90 * time.Second
	}
	// Finish what a crash interrupted: functions still Pending or
	// updating, and functions holding shares none of their configurations
	// uses (a VpcConfig removed, a version deleted, just before the crash).
	s.cache.mu.RLock()
	var fns []*Function
	for _, c := range s.cache.fns {
		if c.v != nil {
			fns = append(fns, c.v)
		}
	}
	s.cache.mu.RUnlock()
	for _, f := range fns {
		c := &f.Latest
		want := s.wantedShares(c.AccountID, c.FunctionName, c)
		if c.State == StatePending || c.LastUpdateStatus == UpdateInProgress || slices.ContainsFunc(f.NetUsers, func(u string) bool { return want[u] == nil }) {
			s.kick(c.AccountID, c.FunctionName)
		}
	}
	if s.o.Networks != nil {
		s.net.wg.Add(1)
		go s.reclaimLoop()
	}
}

// sweepShares releases the ENI shares no function record names. At start
// (prev nil) that is every such share: no VPC setup of this server runs
// yet, and one that ran before a crash recorded its shares before taking
// them. Later passes release only shares unnamed in the previous pass too
// (prev), so a setup between its record and its share, or a record not yet
// seen (another writer), is never taken for a leak. It returns this pass's
// unnamed shares.
func (s *Service) sweepShares(ctx context.Context, prev map[string]bool) map[string]bool {
	sl, ok := s.o.Networks.(ShareLister)
	if !ok {
		return nil
	}
	held, err := sl.Shares(ctx)
	if err != nil {
		s.log.Warn("listing ENI shares failed", "err", err)
		return prev
	}
	named := s.namedShares()
	unnamed := map[string]bool{}
	for acct, users := range held {
		var gone []string
		for _, u := range users {
			if named[u] || !strings.HasPrefix(u, "arn:aws:lambda:") {
				continue
			}
			unnamed[acct+" "+u] = true
			if prev == nil || prev[acct+" "+u] {
				gone = append(gone, u)
			}
		}
		if len(gone) > 0 {
			s.log.Info("releasing ENI shares no function holds", "account", acct, "shares", gone)
			s.releaseShares(ctx, acct, gone, nil)
		}
	}
	return unnamed
}

// namedShares are the shares function records hold or are about to take.
func (s *Service) namedShares() map[string]bool {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	named := map[string]bool{}
	active := map[string]bool{} // functions whose configurations may hold shares (not Inactive)
	for k, c := range s.cache.fns {
		if c.v == nil {
			continue
		}
		for _, u := range c.v.NetUsers {
			named[u] = true
		}
		if c.v.Latest.State != StateInactive {
			active[k] = true
			if v := c.v.Latest.VpcConfig; v != nil {
				named[v.NetUser] = true
			}
		}
	}
	for _, c := range s.cache.versions {
		if c.v != nil && c.v.VpcConfig != nil && active[fnKey(c.v.AccountID, c.v.FunctionName)] {
			named[c.v.VpcConfig.NetUser] = true
		}
	}
	return named
}

func (s *Service) stopNetwork() {
	if s.net.stop == nil {
		return
	}
	close(s.net.stop)
	s.net.wg.Wait()
}

// kick settles a function's network state in the background.
func (s *Service) kick(acct, name string) {
	if s.o.Networks == nil {
		return
	}
	k := fnKey(acct, name)
	s.net.mu.Lock()
	if s.net.running[k] {
		s.net.again[k] = true
		s.net.mu.Unlock()
		return
	}
	s.net.running[k] = true
	s.net.mu.Unlock()
	s.net.wg.Add(1)
	go func() {
		defer s.net.wg.Done()
		for {
			s.settle(acct, name)
			s.net.mu.Lock()
			if !s.net.again[k] {
				delete(s.net.running, k)
				s.net.mu.Unlock()
				return
			}
			delete(s.net.again, k)
			s.net.mu.Unlock()
		}
	}()
}

// settle ensures the ENI shares of every configuration of the function
// ($LATEST and its versions), releases shares nothing uses any more and
// records the outcome as the function's state. A share is recorded on the
// function (NetUsers) before it is taken and released only after it is
// no longer recorded, so a crash never leaves a share no record names
// (sweepShares releases those anyway).
func (s *Service) settle(acct, name string) {
	key := fnKey(acct, name)
	fn := s.cache.fn(key)
	if fn == nil {
		return
	}
	latest := fn.Latest
	pending := latest.State == StatePending || latest.LastUpdateStatus == UpdateInProgress
	want := s.wantedShares(acct, name, &latest)
	if !pending && !slices.ContainsFunc(fn.NetUsers, func(u string) bool { return want[u] == nil }) {
		return // settled, and holding nothing it does not use
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.SettleTimeout)
	defer cancel()
	superseded := func(f *Function) error {
		if f.Latest.RevisionID != latest.RevisionID {
			return errSuperseded
		}
		return nil
	}
	var failure error
	if pending {
		// The shares about to be taken are recorded first.
		if slices.ContainsFunc(slices.Collect(maps.Keys(want)), func(u string) bool { return !slices.Contains(fn.NetUsers, u) }) {
			nf, rev, err := s.fns.Update(ctx, key, func(f *Function) error {
				if err := superseded(f); err != nil {
					return err
				}
				for u := range want {
					if !slices.Contains(f.NetUsers, u) {
						f.NetUsers = append(f.NetUsers, u)
					}
				}
				return nil
			})
			if !s.settleWritten(acct, name, nf, rev, err) {
				return
			}
		}
		if latest.VpcConfig != nil {
			if err := s.checkRole(ctx, acct, latest.Role, true); err != nil {
				failure = &netError{reason: "InsufficientRolePermissions", err: err}
			}
		}
		for user, v := range want {
			if failure != nil {
				break
			}
			if err := s.o.Networks.Ensure(ctx, acct, user, v.SubnetIDs, v.SecurityGroupIDs); err != nil {
				failure = &netError{reason: s.o.Networks.ReasonOf(err), err: err}
			}
		}
	}
	var stale []string
	nf, rev, err := s.fns.Update(ctx, key, func(f *Function) error {
		if err := superseded(f); err != nil {
			return err
		}
		c := &f.Latest
		if pending && failure != nil {
			var ne *netError
			errors.As(failure, &ne)
			msg := failure.Error()
			if ne != nil {
				msg = ne.err.Error()
			}
			c.State, c.StateReason, c.StateReasonCode = StateFailed, msg, ne.reason
			c.LastUpdateStatus, c.LastUpdateStatusReason, c.LastUpdateStatusReasonCode = UpdateFailed, msg, ne.reason
			return nil // the shares stay recorded (DeleteFunction releases them)
		}
		if pending {
			c.State, c.StateReason, c.StateReasonCode = StateActive, "", ""
			c.LastUpdateStatus, c.LastUpdateStatusReason, c.LastUpdateStatusReasonCode = UpdateSuccessful, "", ""
		}
		stale = nil
		keep := f.NetUsers[:0]
		for _, u := range f.NetUsers {
			if want[u] != nil {
				keep = append(keep, u)
			} else {
				stale = append(stale, u)
			}
		}
		f.NetUsers = keep
		return nil
	})
	if errors.Is(err, store.ErrNotFound) && pending {
		// Deleted meanwhile: what was taken for it goes (its shares are
		// named after this incarnation, so no other function holds them).
		s.releaseShares(context.Background(), acct, slices.Collect(maps.Keys(want)), nil)
	}
	if !s.settleWritten(acct, name, nf, rev, err) {
		return
	}
	switch {
	case !pending:
	case failure != nil:
		s.log.Warn("function VPC setup failed", "account", acct, "function", name, "err", failure)
	default:
		s.log.Info("function VPC setup done", "account", acct, "function", name, "shares", len(want))
	}
	s.releaseShares(context.Background(), acct, stale, nil)
}

// wantedShares are the ENI shares the function's configurations use:
// $LATEST's and its published versions'.
func (s *Service) wantedShares(acct, name string, latest *Config) map[string]*VpcConfig {
	want := map[string]*VpcConfig{}
	if latest.VpcConfig != nil {
		want[latest.VpcConfig.NetUser] = latest.VpcConfig
	}
	vs, _ := s.versionsOf(acct, name)
	for i := range vs {
		if v := vs[i].VpcConfig; v != nil && v.NetUser != "" {
			want[v.NetUser] = v
		}
	}
	return want
}

// settleWritten handles the outcome of one of settle's writes: it caches
// the record written and reports whether settle goes on.
func (s *Service) settleWritten(acct, name string, nf *Function, rev uint64, err error) bool {
	switch {
	case errors.Is(err, errSuperseded):
		s.kick(acct, name) // a newer update arrived meanwhile: settle that one
		return false
	case errors.Is(err, store.ErrNotFound):
		return false
	case err != nil:
		s.log.Warn("recording function network state failed", "function", name, "err", err)
		return false
	}
	s.cache.putFn(fnKey(acct, name), nf, rev)
	return true
}

var errSuperseded = errors.New("superseded by a newer update")

// netError carries the Lambda state reason code of a failed setup.
type netError struct {
	reason string
	err    error
}

func (e *netError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

func (s *Service) releaseShares(ctx context.Context, acct string, users []string, keep map[string]bool) {
	if s.o.Networks == nil {
		return
	}
	for _, u := range users {
		if keep[u] {
			continue
		}
		if err := s.o.Networks.Release(ctx, acct, u); err != nil {
			s.log.Warn("releasing ENI share failed", "user", u, "err", err)
		}
	}
}

// Touch records an invocation (idle reclaim measures from it).
func (s *Service) Touch(acct, name string) {
	if s.o.Networks == nil {
		return
	}
	now := s.o.Now()
	k := fnKey(acct, name)
	if s.cache.fn(k) == nil { // deleted meanwhile: nothing to remember
		return
	}
	s.net.mu.Lock()
	s.net.lastUsed[k] = now
	s.net.mu.Unlock()
}

func (s *Service) reclaimLoop() {
	defer s.net.wg.Done()
	every := s.o.VpcIdleTimeout / 4
	if every > time.Minute {
		every = time.Minute
	}
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	unnamed := s.sweepShares(context.Background(), nil)
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-s.net.stop:
			return
		case <-t.C:
			s.reclaimIdle()
		case <-sweep.C:
			unnamed = s.sweepShares(context.Background(), unnamed)
		}
	}
}

// reclaimIdle makes VPC functions idle for VpcIdleTimeout Inactive and
// releases their ENI shares (an ENI nobody uses is then deleted).
func (s *Service) reclaimIdle() {
	now := s.o.Now()
	type cand struct{ acct, name string }
	var idle []cand
	s.cache.mu.RLock()
	s.net.mu.Lock()
	for k, c := range s.cache.fns {
		if c.v == nil || c.v.Latest.VpcConfig == nil || c.v.Latest.State != StateActive || c.v.Latest.LastUpdateStatus == UpdateInProgress {
			continue
		}
		last, ok := s.net.lastUsed[k]
		if !ok || last.Before(c.v.Latest.LastModified) {
			last = c.v.Latest.LastModified
		}
		if now.Sub(last) >= s.o.VpcIdleTimeout {
			idle = append(idle, cand{c.v.Latest.AccountID, c.v.Latest.FunctionName})
		}
	}
	for k := range s.net.lastUsed { // an invoke that touched a function being deleted
		if s.cache.fns[k].v == nil {
			delete(s.net.lastUsed, k)
		}
	}
	s.net.mu.Unlock()
	s.cache.mu.RUnlock()
	for _, f := range idle {
		var users []string
		nf, rev, err := s.fns.Update(context.Background(), fnKey(f.acct, f.name), func(fn *Function) error {
			if fn.Latest.State != StateActive {
				return errSuperseded
			}
			c := &fn.Latest
			c.State, c.StateReason, c.StateReasonCode = StateInactive, "The function is inactive because it has not been invoked for a long time; its network interfaces were reclaimed.", ReasonIdle
			users = fn.NetUsers
			fn.NetUsers = nil
			return nil
		})
		if err != nil {
			continue
		}
		s.cache.putFn(fnKey(f.acct, f.name), nf, rev)
		s.log.Info("function became inactive (idle)", "account", f.acct, "function", f.name)
		s.releaseShares(context.Background(), f.acct, users, nil)
	}
}

// Ready waits until the function can run an invocation: a Pending or
// updating function is waited for, an Inactive one is restored first. A
// Failed function returns the 502 error matching its reason code.
func (s *Service) Ready(ctx context.Context, acct, name string) error {
	k := fnKey(acct, name)
	for {
		fn := s.cache.fn(k)
		if fn == nil {
			return notFound("Function not found: %s", name)
		}
		c := fn.Latest
		switch {
		case c.State == StateFailed:
			return stateError(&c)
		case c.State == StateInactive:
			if err := s.restore(ctx, acct, name); err != nil {
				return err
			}
		case c.State == StatePending || c.LastUpdateStatus == UpdateInProgress:
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return &Error{Code: "ResourceNotReadyException", Status: 502, Message: fmt.Sprintf("The function %s is still being set up (%s); retry shortly.", name, c.StateReasonCode)}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// restore moves an Inactive function to Pending/Restoring and settles it.
func (s *Service) restore(ctx context.Context, acct, name string) error {
	nf, rev, err := s.fns.Update(ctx, fnKey(acct, name), func(fn *Function) error {
		if fn.Latest.State != StateInactive {
			return errSuperseded
		}
		setPending(&fn.Latest, ReasonRestoring, "The function is being restored.")
		return nil
	})
	if errors.Is(err, errSuperseded) {
		return nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return notFound("Function not found: %s", name)
	}
	if err != nil {
		return err
	}
	s.cache.putFn(fnKey(acct, name), nf, rev)
	s.log.Info("restoring inactive function", "account", acct, "function", name)
	s.kick(acct, name)
	return nil
}

// stateError is the invoke error of a Failed function.
func stateError(c *Config) *Error {
	code := map[string]string{
		"SubnetOutOfIPAddresses":      "SubnetIPAddressLimitReachedException",
		"EniLimitExceeded":            "ENILimitReachedException",
		"InsufficientRolePermissions": "EC2AccessDeniedException",
		"InvalidSubnet":               "InvalidSubnetIDException",
		"InvalidSecurityGroup":        "InvalidSecurityGroupIDException",
	}[c.StateReasonCode]
	if code == "" {
		code = "EC2UnexpectedException"
	}
	return &Error{Code: code, Status: 502, Message: fmt.Sprintf("Lambda was unable to set up the function's VPC access (%s): %s", c.StateReasonCode, c.StateReason)}
}
