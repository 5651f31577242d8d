package control

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/codepkg"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// fakeVpcs knows subnets and groups of one VPC (any account).
type fakeVpcs struct{}

func (fakeVpcs) SubnetVPC(ctx context.Context, account, id string) (string, error) {
	if slices.Contains([]string{"subnet-a", "subnet-b", "subnet-c"}, id) {
		return "vpc-1", nil
	}
	return "", fmt.Errorf("no subnet %s", id)
}

func (fakeVpcs) GroupVPC(ctx context.Context, account, id string) (string, error) {
	if id == "sg-1" || id == "sg-2" {
		return "vpc-1", nil
	}
	return "", fmt.Errorf("no group %s", id)
}

// fakeNets holds ENI shares in memory (one account's). An Ensure waits
// for gate when it is set.
type fakeNets struct {
	mu    sync.Mutex
	users map[string]bool
	gate  chan struct{}
}

func (n *fakeNets) Ensure(ctx context.Context, account, user string, subnetIDs, sgIDs []string) error {
	n.mu.Lock()
	gate := n.gate
	n.mu.Unlock()
	if gate != nil {
		<-gate
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.users[user] = true
	return nil
}

func (n *fakeNets) Shares(ctx context.Context) (map[string][]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return map[string][]string{testAcct: slices.Collect(maps.Keys(n.users))}, nil
}

func (n *fakeNets) held() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Sorted(maps.Keys(n.users))
}

func (n *fakeNets) Release(ctx context.Context, account, user string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.users, user)
	return nil
}

func (n *fakeNets) ReasonOf(err error) string { return "InternalError" }

func newVpcTestService(t *testing.T, authorize func(ctx context.Context, action, resource string, cond map[string][]string) error) (*Service, *fakeNets) {
	t.Helper()
	nets := &fakeNets{users: map[string]bool{}}
	return openVpcTestService(t, t.TempDir(), nets, authorize), nets
}

func openVpcTestService(t *testing.T, dir string, nets *fakeNets, authorize func(ctx context.Context, action, resource string, cond map[string][]string) error) *Service {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s, err := New(ctx, Options{Store: st, DataDir: dir, CodeLimits: codepkg.DefaultLimits(), Vpcs: fakeVpcs{}, Networks: nets, Authorize: authorize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func createVpcFn(t *testing.T, s *Service, name, subnet string) {
	t.Helper()
	zip := testZip(t, map[string]string{"bootstrap": "#!/bin/sh\n"})
	if _, err := s.CreateFunction(context.Background(), testAcct, testRegion, &CreateInput{FunctionName: name, Runtime: "provided.al2023", Role: "arn:aws:iam::" + testAcct + ":role/r",
		Handler: "bootstrap", Code: &CodeInput{ZipFile: zip}, VpcConfig: vpcIn(subnet)}); err != nil {
		t.Fatal(err)
	}
}

func waitShares(t *testing.T, nets *fakeNets, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(nets.held(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("ENI shares %v, want %v", nets.held(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitSettled(t *testing.T, s *Service, name string) *Function {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		fn := s.cache.fn(fnKey(testAcct, name))
		if fn != nil && fn.Latest.LastUpdateStatus != UpdateInProgress && fn.Latest.State != StatePending {
			return fn
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s did not settle", name)
	return nil
}

func vpcIn(subnet string) *VpcInput {
	return &VpcInput{SubnetIds: []string{subnet}, SecurityGroupIds: []string{"sg-1"}}
}

// TestUpdateVpcConfigRacingAnotherUpdate: an UpdateFunctionConfiguration
// that asks for the VpcConfig the function had when the request arrived,
// while another update moved the function elsewhere and finished setting
// up, is not acknowledged without taking effect: once it succeeded, the
// function has the VpcConfig it asked for.
func TestUpdateVpcConfigRacingAnotherUpdate(t *testing.T) {
	var s *Service
	armed, raced := false, false
	authorize := func(ctx context.Context, action, resource string, cond map[string][]string) error {
		if !armed || action != "lambda:UpdateFunctionConfiguration" {
			return nil
		}
		armed = false
		// The request for subnet-a has read the function (on subnet-a) and
		// not yet written: another caller moves it to subnet-b meanwhile.
		if _, err := s.UpdateConfig(ctx, testAcct, testRegion, "f", &UpdateConfigInput{VpcConfig: vpcIn("subnet-b")}); err != nil {
			t.Errorf("the other update: %v", err)
		}
		waitSettled(t, s, "f")
		raced = true
		return nil
	}
	s, nets := newVpcTestService(t, authorize)
	ctx := context.Background()
	zip := testZip(t, map[string]string{"bootstrap": "#!/bin/sh\n"})
	if _, err := s.CreateFunction(ctx, testAcct, testRegion, &CreateInput{FunctionName: "f", Runtime: "provided.al2023", Role: "arn:aws:iam::" + testAcct + ":role/r",
		Handler: "bootstrap", Code: &CodeInput{ZipFile: zip}, VpcConfig: &VpcInput{SubnetIds: []string{"subnet-c"}, SecurityGroupIds: []string{"sg-1"}}}); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, s, "f")
	if _, err := s.UpdateConfig(ctx, testAcct, testRegion, "f", &UpdateConfigInput{VpcConfig: vpcIn("subnet-a")}); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, s, "f")
	armed = true
	out, err := s.UpdateConfig(ctx, testAcct, testRegion, "f", &UpdateConfigInput{VpcConfig: vpcIn("subnet-a")})
	if !raced {
		t.Fatal("the racing update did not run")
	}
	if err != nil {
		if e, ok := err.(*Error); ok && e.Status == 409 {
			return // refused: not acknowledged, nothing lost
		}
		t.Fatal(err)
	}
	if got := out.VpcConfig.SubnetIDs; !slices.Equal(got, []string{"subnet-a"}) {
		t.Errorf("acknowledged with subnets %v, asked for [subnet-a]", got)
	}
	fn := waitSettled(t, s, "f")
	rec, _, err := s.fns.Get(ctx, fnKey(testAcct, "f"))
	if err != nil {
		t.Fatal(err)
	}
	for what, c := range map[string]*Config{"cached": &fn.Latest, "stored": &rec.Latest} {
		if c.VpcConfig == nil || !slices.Equal(c.VpcConfig.SubnetIDs, []string{"subnet-a"}) || c.State != StateActive {
			t.Errorf("%s after the acknowledged update: %s %+v, want Active on subnet-a", what, c.State, c.VpcConfig)
		}
	}
	// The shares held are exactly the function's.
	nets.mu.Lock()
	defer nets.mu.Unlock()
	if len(nets.users) != 1 || !nets.users[rec.Latest.VpcConfig.NetUser] {
		t.Errorf("ENI shares %v, want only %s", nets.users, rec.Latest.VpcConfig.NetUser)
	}
}

// TestSharesFollowVpcConfig: a share is released when VpcConfig is
// removed, and when the function is deleted while its VPC setup runs; a
// function deleted and created again under the same name holds a share of
// its own.
func TestSharesFollowVpcConfig(t *testing.T) {
	s, nets := newVpcTestService(t, nil)
	ctx := context.Background()
	createVpcFn(t, s, "f", "subnet-a")
	fn := waitSettled(t, s, "f")
	first := fn.Latest.VpcConfig.NetUser
	waitShares(t, nets, []string{first})
	if _, err := s.UpdateConfig(ctx, testAcct, testRegion, "f", &UpdateConfigInput{VpcConfig: &VpcInput{SubnetIds: []string{}, SecurityGroupIds: []string{}}}); err != nil {
		t.Fatal(err)
	}
	waitShares(t, nets, nil)
	if fn := waitSettled(t, s, "f"); len(fn.NetUsers) != 0 || fn.Latest.VpcConfig != nil {
		t.Errorf("after removing VpcConfig the function holds %v (%+v)", fn.NetUsers, fn.Latest.VpcConfig)
	}
	if err := s.DeleteFunction(ctx, testAcct, testRegion, "f", ""); err != nil {
		t.Fatal(err)
	}

	// Deleted while its setup waits in Ensure.
	gate := make(chan struct{})
	nets.mu.Lock()
	nets.gate = gate
	nets.mu.Unlock()
	createVpcFn(t, s, "f", "subnet-a")
	second := s.cache.fn(fnKey(testAcct, "f")).Latest.VpcConfig.NetUser
	if second == first {
		t.Errorf("the function created again shares its predecessor's ENI share name %s", first)
	}
	if err := s.DeleteFunction(ctx, testAcct, testRegion, "f", ""); err != nil {
		t.Fatal(err)
	}
	nets.mu.Lock()
	nets.gate = nil
	nets.mu.Unlock()
	close(gate)
	waitShares(t, nets, nil)
}

// TestStartReleasesSharesNoFunctionHolds: shares left on ENIs by a crash
// (after a function's record stopped naming them, before their release;
// after its VpcConfig was removed, before its setup released the share)
// are released when the control plane starts; the shares functions use
// stay.
func TestStartReleasesSharesNoFunctionHolds(t *testing.T) {
	dir := t.TempDir()
	nets := &fakeNets{users: map[string]bool{}}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Options{Store: st, DataDir: dir, CodeLimits: codepkg.DefaultLimits(), Vpcs: fakeVpcs{}, Networks: nets})
	if err != nil {
		t.Fatal(err)
	}
	createVpcFn(t, s, "keep", "subnet-a")
	kept := waitSettled(t, s, "keep").Latest.VpcConfig.NetUser
	createVpcFn(t, s, "removed", "subnet-b")
	waitSettled(t, s, "removed")
	// The record as UpdateFunctionConfiguration leaves it for the setup
	// that a SIGKILL then prevented.
	if _, _, err := s.fns.Update(ctx, fnKey(testAcct, "removed"), func(f *Function) error {
		f.Latest.VpcConfig = nil
		f.Latest.RevisionID = newRevision()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st.Close()
	leaked := FunctionARN(testRegion, testAcct, "gone") + ":vpc-0123456789ab"
	nets.mu.Lock()
	nets.users[leaked] = true
	nets.mu.Unlock()
	openVpcTestService(t, dir, nets, nil)
	waitShares(t, nets, []string{kept})
}
