package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/lambdaplane/lambdaplane/internal/server"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// The VPC scenarios run in-process only: the legacy mode needs a server of
// its own (--vpc-mode=per-env-eni), which the bench starts next to the
// main one (own prefix, data directory and uplink link net).

const (
	labelNoVPC  = "no VPC"
	labelShared = "VPC, shared ENI"
	labelPerEnv = "VPC, per-env-eni"

	vpcCIDR    = "10.0.0.0/16"
	subnetCIDR = "10.0.0.0/22" // 1,019 usable addresses: room for 200 legacy environments
)

// vpcNet is the bench's network on one server: a VPC, a subnet and a
// security group for its functions.
type vpcNet struct {
	vpc, subnet, sg string
	free0           int32 // the subnet's free addresses when it was made
}

const errNeedsLocal = "needs the in-process server (the legacy mode runs on a second server the bench starts)"

// ensureNetwork makes e's VPC, subnet, security group and VPC role once.
func (e *Env) ensureNetwork(ctx context.Context) (*vpcNet, error) {
	if e.net != nil {
		return e.net, nil
	}
	if e.Server == nil || e.ec2 == nil {
		return nil, errors.New(errNeedsLocal)
	}
	role, err := e.Server.EnsureExecutionRole(ctx, e.Server.Account.ID, "lambdaplane-bench-vpc", true)
	if err != nil {
		return nil, fmt.Errorf("VPC execution role: %w", err)
	}
	e.vpcRole = role
	v, err := e.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(vpcCIDR)})
	if err != nil {
		return nil, fmt.Errorf("create VPC: %w", err)
	}
	n := &vpcNet{vpc: aws.ToString(v.Vpc.VpcId)}
	e.net = n // deleteNetwork removes whatever part of it exists
	sn, err := e.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(n.vpc), CidrBlock: aws.String(subnetCIDR)})
	if err != nil {
		return nil, fmt.Errorf("create subnet: %w", err)
	}
	n.subnet = aws.ToString(sn.Subnet.SubnetId)
	g, err := e.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("lpbench"), Description: aws.String("lambdaplane bench functions"), VpcId: aws.String(n.vpc)})
	if err != nil {
		return nil, fmt.Errorf("create security group: %w", err)
	}
	n.sg = aws.ToString(g.GroupId)
	if n.free0, err = e.freeAddresses(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func (e *Env) vpcConfig() *types.VpcConfig {
	return &types.VpcConfig{SubnetIds: []string{e.net.subnet}, SecurityGroupIds: []string{e.net.sg}}
}

// freeAddresses is the subnet's AvailableIpAddressCount (DescribeSubnets).
func (e *Env) freeAddresses(ctx context.Context) (int32, error) {
	out, err := e.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{e.net.subnet}})
	if err != nil {
		return 0, fmt.Errorf("describe subnet: %w", err)
	}
	if len(out.Subnets) != 1 {
		return 0, fmt.Errorf("describe subnet %s: %d subnets", e.net.subnet, len(out.Subnets))
	}
	return aws.ToInt32(out.Subnets[0].AvailableIpAddressCount), nil
}

// subnetENIs counts the network interfaces in the subnet (only the
// bench's functions use it).
func (e *Env) subnetENIs(ctx context.Context) (int, error) {
	out, err := e.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []ec2types.Filter{
		{Name: aws.String("subnet-id"), Values: []string{e.net.subnet}}}})
	if err != nil {
		return 0, fmt.Errorf("describe network interfaces: %w", err)
	}
	return len(out.NetworkInterfaces), nil
}

// deleteNetwork deletes e's VPC once its ENIs are gone (bounded wait).
func (e *Env) deleteNetwork(ctx context.Context) error {
	n := e.net
	if n == nil || e.ec2 == nil {
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	retry := func(what string, f func() error) error {
		for i := 0; ; i++ {
			err := f()
			if err == nil || apiCode(err) == "InvalidVpcID.NotFound" || apiCode(err) == "InvalidSubnetID.NotFound" || apiCode(err) == "InvalidGroup.NotFound" {
				return nil
			}
			if i >= 600 || time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var errs []error
	if n.subnet != "" {
		errs = append(errs, retry("wait for the subnet's ENIs to go", func() error {
			k, err := e.subnetENIs(ctx)
			if err == nil && k > 0 {
				err = fmt.Errorf("%d ENIs left in %s", k, n.subnet)
			}
			return err
		}))
	}
	if n.sg != "" {
		errs = append(errs, retry("delete security group "+n.sg, func() error {
			_, err := e.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(n.sg)})
			return err
		}))
	}
	if n.subnet != "" {
		errs = append(errs, retry("delete subnet "+n.subnet, func() error {
			_, err := e.ec2.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(n.subnet)})
			return err
		}))
	}
	errs = append(errs, retry("delete VPC "+n.vpc, func() error {
		_, err := e.ec2.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(n.vpc)})
		return err
	}))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	e.net = nil
	return nil
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// createVPCFunctions creates n functions in e's VPC and waits until they
// are Active (each wait bounded).
func createVPCFunctions(ctx context.Context, e *Env, scenario string, n int) ([]string, error) {
	if _, err := e.ensureNetwork(ctx); err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = e.Name(scenario, i)
	}
	err := parallel(ctx, n, 8, func(ctx context.Context, i int) error {
		if err := e.createIn(ctx, names[i], FnHello, e.vpcConfig()); err != nil {
			return err
		}
		return e.waitActive(ctx, names[i])
	})
	return names, err
}

func (e *Env) waitActive(ctx context.Context, name string) error {
	var last types.State
	for i := 0; i < 600; i++ {
		out, err := e.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("get function %s: %w", name, err)
		}
		last = out.Configuration.State
		switch last {
		case types.StateActive:
			return nil
		case types.StateFailed:
			return fmt.Errorf("function %s failed: %s: %s", name, out.Configuration.StateReasonCode, aws.ToString(out.Configuration.StateReason))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("function %s still %s after 60 s", name, last)
}

// vpcServers returns the servers of the VPC scenarios: the main one (no
// VPC and shared ENIs) and one in per-env-eni mode, with the default ENI
// creation rate unless fast.
func vpcServers(ctx context.Context, e *Env, fast bool) (perEnv *Env, err error) {
	if e.Server == nil || e.spawn == nil {
		return nil, errors.New(errNeedsLocal)
	}
	if _, err := e.ensureNetwork(ctx); err != nil {
		return nil, err
	}
	key, mut := "per-env-eni", func(c *server.Config) { c.VpcMode = "per-env-eni" }
	if fast {
		key, mut = "per-env-eni-fast", func(c *server.Config) {
			c.VpcMode, c.ENICreateRate, c.ENIsPerVPC = "per-env-eni", 10000, 2000
		}
	}
	pe, err := e.spawn(ctx, key, mut)
	if err != nil {
		return nil, err
	}
	if _, err := pe.ensureNetwork(ctx); err != nil {
		return nil, err
	}
	return pe, nil
}

// ---- VPC cold start ----

var vpcColdScenario = Scenario{
	Name: "vpc-cold-start", Title: "VPC cold start: shared ENI vs --vpc-mode=per-env-eni",
	About: "The first invoke of a new hello-world function (same code and settings as the cold-start scenario) in three setups: no VpcConfig; VpcConfig in the Hyperplane model (the environment attaches to the shared ENI of its subnet and security groups, made when the function was created); VpcConfig on a second in-process server started with --vpc-mode=per-env-eni (each environment creates its own ENI at cold start, at most 10 per second). The functions are created and made Active first; the runs are interleaved (one of each mode in turn) so that noise hits all three alike. The phases are the scheduler's recorded ones per cold start; vpc_attach is the whole VPC cost of a cold start.",
	Quick: 45 * time.Second,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		pe, err := vpcServers(ctx, e, false)
		if err != nil {
			return err
		}
		n := pick(e, 3, 50)
		plain, err := e.CreateFunctions(ctx, "vcold", FnHello, n)
		defer cleanupFunctions(e, plain)
		if err != nil {
			return err
		}
		shared, err := createVPCFunctions(ctx, e, "vcoldsh", n)
		defer cleanupFunctions(e, shared)
		if err != nil {
			return err
		}
		legacy, err := createVPCFunctions(ctx, pe, "vcoldpe", n)
		defer cleanupFunctions(pe, legacy)
		if err != nil {
			return err
		}
		type mode struct {
			label string
			e     *Env
			names []string
			lat   *Series
		}
		modes := []*mode{{label: labelNoVPC, e: e, names: plain}, {label: labelShared, e: e, names: shared}, {label: labelPerEnv, e: pe, names: legacy}}
		for _, m := range modes {
			m.lat = r.series(m.label, "ms", 0)
		}
		p := &progress{e: e, what: "VPC cold starts (3 modes interleaved)", total: n}
		for i := 0; i < n; i++ {
			for _, m := range modes {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				d, _, err := m.e.Invoke(ctx, m.names[i], helloEvent)
				if err != nil {
					return fmt.Errorf("%s: %w", m.label, err)
				}
				m.lat.Samples = append(m.lat.Samples, msOf(d))
			}
			p.step(i + 1)
		}
		for _, m := range modes {
			s := m.lat.Samples
			r.value(m.label+": cold start p50", round2(Quantile(s, .5)), "ms")
			r.value(m.label+": cold start p90", round2(Quantile(s, .9)), "ms")
			r.value(m.label+": cold start p99", round2(Quantile(s, .99)), "ms")
		}
		// Phases per mode, from each server's scheduler.
		for _, m := range modes {
			idx := map[string]int{}
			for i, n := range m.names {
				idx[n] = i
			}
			byPhase := map[string][]float64{}
			var order []string
			var first []float64
			for _, cs := range m.e.Server.Scheduler().ColdStarts() {
				i, ok := idx[cs.Function]
				if !ok || cs.AccountID != m.e.Server.Account.ID {
					continue
				}
				var top float64
				for _, ph := range cs.Phases {
					if !isTop(ph.Name) {
						continue
					}
					if _, seen := byPhase[ph.Name]; !seen {
						order = append(order, ph.Name)
					}
					byPhase[ph.Name] = append(byPhase[ph.Name], msOf(ph.D))
					top += msOf(ph.D)
				}
				first = append(first, m.lat.Samples[i]-top)
			}
			if len(first) == 0 {
				return fmt.Errorf("%s: the scheduler recorded none of the cold starts", m.label)
			}
			for _, ph := range order {
				r.series(m.label+": "+ph, "ms", 0).Samples = byPhase[ph]
			}
			r.series(m.label+": "+firstResponse, "ms", 0).Samples = first
			if a := byPhase["vpc_attach"]; len(a) > 0 {
				r.value(m.label+": vpc_attach phase p50", round2(Quantile(a, .5)), "ms")
			}
		}
		return nil
	},
	Plot: plotVPCCold,
}

// plotVPCCold: the latency CDFs of the modes, and the mean phases of a
// cold start per mode as stacked bars.
func plotVPCCold(dir string, r *Result) ([]string, error) {
	var out []string
	p := newPlot(r.Title, "first-invoke latency (ms)", "fraction of cold starts ≤ x")
	var args []any
	for _, s := range r.Series {
		if len(s.Samples) > 0 && !strings.Contains(s.Name, ": ") {
			args = append(args, s.Name, cdf(s.Samples))
		}
	}
	if len(args) > 0 {
		if err := plotutil.AddLines(p, args...); err != nil {
			return nil, err
		}
		f, err := save(p, dir, r.Name, 6*vg.Inch, 4*vg.Inch)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	// Phases: modes on x, phases stacked.
	var modes, phases []string
	mean := map[[2]string]float64{}
	for _, s := range r.Series {
		m, ph, ok := strings.Cut(s.Name, ": ")
		if !ok || len(s.Samples) == 0 {
			continue
		}
		if !contains(modes, m) {
			modes = append(modes, m)
		}
		if !contains(phases, ph) {
			phases = append(phases, ph)
		}
		mean[[2]string{m, ph}] = Mean(s.Samples)
	}
	if len(modes) == 0 {
		return out, nil
	}
	// first_response on top.
	sort.SliceStable(phases, func(i, j int) bool { return phases[j] == firstResponse && phases[i] != firstResponse })
	pp := newPlot("VPC cold-start phases (mean per cold start)", "", "ms")
	pp.Legend.Top, pp.Legend.Left = true, false
	var below *plotter.BarChart
	for i, ph := range phases {
		vals := make(plotter.Values, len(modes))
		for j, m := range modes {
			vals[j] = mean[[2]string{m, ph}]
		}
		b, err := plotter.NewBarChart(vals, vg.Points(40))
		if err != nil {
			return nil, err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = vg.Points(0.5)
		if below != nil {
			b.StackOn(below)
		}
		below = b
		pp.Add(b)
		pp.Legend.Add(ph, b)
	}
	pp.NominalX(modes...)
	pp.X.Max = float64(len(modes)) + 0.8 // room for the legend
	f, err := save(pp, dir, r.Name+"-phases", 7*vg.Inch, 4.5*vg.Inch)
	if err != nil {
		return nil, err
	}
	return append(out, f), nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// ---- ENI creation limit ----

var eniLimitScenario = Scenario{
	Name: "eni-limit", Title: "ENI creation limit under a burst (per-env-eni)",
	About: "N new VPC functions (Active, same subnet and security group) are invoked for the first time all at once: N simultaneous cold starts. With --vpc-mode=per-env-eni (default creation rate, 10 ENIs per second, one second's worth of burst) each cold start must create an ENI, and those beyond the rate are refused with ENILimitReachedException (502), as Lambda did before 2019; the bench counts the refusals and retries each refused invoke (100 ms apart, at most 200 times) to measure the time until all N were answered. In the Hyperplane model the same burst attaches to the one shared ENI. Each sample is one invoke's time from the release of the burst until it was answered (retries included).",
	Quick: 40 * time.Second,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		pe, err := vpcServers(ctx, e, false)
		if err != nil {
			return err
		}
		n := pick(e, 20, 100)
		for _, m := range []struct {
			label string
			e     *Env
		}{{labelShared, e}, {labelPerEnv, pe}} {
			if err := eniBurst(ctx, m.e, r, m.label, n); err != nil {
				return err
			}
		}
		return nil
	},
	Plot: plotBoxes,
}

func eniBurst(ctx context.Context, e *Env, r *Result, label string, n int) error {
	names, err := createVPCFunctions(ctx, e, "enil", n)
	defer cleanupFunctions(e, names)
	if err != nil {
		return err
	}
	e.Log.Info("bench: progress", "step", "ENI limit burst", "mode", label, "simultaneous", n)
	s := r.series(fmt.Sprintf("%s: %d simultaneous, until answered", label, n), "ms", float64(n))
	var mu sync.Mutex
	var wg sync.WaitGroup
	limited, firstTry, failed := 0, 0, 0
	var firstErr error
	ready := make(chan struct{})
	start := time.Now()
	for _, fn := range names {
		wg.Add(1)
		go func(fn string) {
			defer wg.Done()
			<-ready
			for attempt := 0; attempt < 200 && ctx.Err() == nil; attempt++ {
				_, _, err := e.Invoke(ctx, fn, helloEvent)
				mu.Lock()
				switch {
				case err == nil:
					s.Samples = append(s.Samples, msOf(time.Since(start)))
					if attempt == 0 {
						firstTry++
					}
					mu.Unlock()
					return
				case apiCode(err) == "ENILimitReachedException":
					limited++
					mu.Unlock()
					time.Sleep(100 * time.Millisecond)
					continue
				default:
					failed++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			failed++
			mu.Unlock()
		}(fn)
	}
	close(ready)
	wg.Wait()
	all := time.Since(start)
	s.Errors = limited
	r.value(label+": time until all answered", round2(msOf(all)), "ms")
	r.value(label+": ENILimitReachedException refusals", float64(limited), "")
	r.value(label+": answered on the first try", float64(firstTry), fmt.Sprintf("of %d", n))
	if failed > 0 {
		r.value(label+": never answered", float64(failed), "")
		r.Notes = append(r.Notes, fmt.Sprintf("%s: %d invokes were never answered; first other error: %v", label, failed, firstErr))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d invokes were never answered: %v", label, failed, n, firstErr)
	}
	return nil
}

// ---- addresses vs concurrency ----

var addressesScenario = Scenario{
	Name: "vpc-addresses", Title: "Subnet addresses vs concurrency",
	About: "For each level C, a new VPC function (its own subnet's addresses otherwise unused) is invoked C times at once with a 1-second sleep, so that C environments overlap. While the invokes run, DescribeSubnets (AvailableIpAddressCount) and DescribeNetworkInterfaces are polled every 100 ms; addresses used is the subnet's free count before the function was created minus the lowest seen, ENIs the most seen. Shared ENI: the main server; per-env-eni: a server in that mode (in the full suite with the ENI creation rate raised to 10,000/s so that the limit does not get in the way of counting). The levels of the two modes are interleaved.",
	Quick: 45 * time.Second,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		levels := pick(e, []int{1, 5, 10}, []int{1, 10, 50, 100, 200})
		pe, err := vpcServers(ctx, e, levels[len(levels)-1] > 10)
		if err != nil {
			return err
		}
		r.Checkpoints = true
		conc := r.series("concurrency", "invokes", 0)
		type mode struct {
			label           string
			e               *Env
			addrs, enis, ev *Series
		}
		modes := []*mode{{label: "shared ENI", e: e}, {label: "per-env-eni", e: pe}}
		for _, m := range modes {
			m.addrs = r.series("addresses used, "+m.label, "count", 0)
		}
		for _, m := range modes {
			m.enis = r.series("ENIs, "+m.label, "count", 0)
		}
		for _, m := range modes {
			m.ev = r.series("environments, "+m.label, "count", 0)
		}
		for _, l := range levels {
			conc.Samples = append(conc.Samples, float64(l))
			for _, m := range modes {
				used, enis, envs, err := addressesAt(ctx, m.e, r, m.label, l)
				if err != nil {
					return fmt.Errorf("%s, %d simultaneous: %w", m.label, l, err)
				}
				m.addrs.Samples = append(m.addrs.Samples, float64(used))
				m.enis.Samples = append(m.enis.Samples, float64(enis))
				m.ev.Samples = append(m.ev.Samples, float64(envs))
			}
		}
		last := len(levels) - 1
		for _, m := range modes {
			r.value(fmt.Sprintf("addresses used at %d simultaneous, %s", levels[last], m.label), m.addrs.Samples[last], "")
		}
		return nil
	},
	Plot: plotAddresses,
}

// addressesAt runs one level: l simultaneous sleeping invokes of a new
// function, polling the subnet meanwhile.
func addressesAt(ctx context.Context, e *Env, r *Result, label string, l int) (used, enis, envs int, err error) {
	// Start from an idle subnet: the previous level's ENIs are deleted in
	// the background once its function is.
	base := e.net.free0
	for i := 0; i < 300 && ctx.Err() == nil; i++ {
		f, err := e.freeAddresses(ctx)
		if err != nil {
			return 0, 0, 0, err
		}
		if f >= base {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	names, err := createVPCFunctions(ctx, e, fmt.Sprintf("addr%d", l), 1)
	defer cleanupFunctions(e, names)
	if err != nil {
		return 0, 0, 0, err
	}
	e.Log.Info("bench: progress", "step", "addresses", "mode", label, "simultaneous", l)
	ev, _ := json.Marshal(map[string]any{"name": "bench", "sleepMs": 1000})
	minFree, maxENIs, maxEnvs := base, 0, 0
	var pollErr error
	stop := make(chan struct{})
	polled := make(chan struct{})
	poll := func() {
		f, err := e.freeAddresses(ctx)
		if err == nil {
			var k int
			k, err = e.subnetENIs(ctx)
			maxENIs = max(maxENIs, k)
		}
		if err != nil && pollErr == nil && ctx.Err() == nil {
			pollErr = err
		}
		if err == nil {
			minFree = min(minFree, f)
		}
		maxEnvs = max(maxEnvs, e.Server.Scheduler().Stats().Environments)
	}
	go func() {
		defer close(polled)
		for i := 0; i < 3000; i++ { // bounded: 300 s at 100 ms
			poll()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := 0
	var firstErr error
	ready := make(chan struct{})
	for i := 0; i < l; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			if _, _, err := e.Invoke(ctx, names[0], ev); err != nil {
				mu.Lock()
				failed++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	close(ready)
	wg.Wait()
	close(stop)
	<-polled
	poll() // environments are still attached after the answers
	if failed > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s, %d simultaneous: %d invokes failed, first: %v", label, l, failed, firstErr))
	}
	if pollErr != nil {
		return 0, 0, 0, pollErr
	}
	return int(base - minFree), maxENIs, maxEnvs, ctx.Err()
}

func plotAddresses(dir string, r *Result) ([]string, error) {
	var ys []string
	for _, s := range r.Series {
		if strings.HasPrefix(s.Name, "addresses used") {
			ys = append(ys, s.Name)
		}
	}
	args := xyAgainst(r, "concurrency", ys...)
	if len(args) == 0 {
		return nil, nil
	}
	p := newPlot("Subnet addresses used vs concurrency", "simultaneous invokes (environments)", "subnet addresses used")
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Min = 0
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	f, err := save(p, dir, r.Name, 6*vg.Inch, 4*vg.Inch)
	if err != nil {
		return nil, err
	}
	return []string{f}, nil
}
