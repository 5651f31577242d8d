package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	middleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/lambdaplane/lambdaplane/internal/client"
	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/e2e/cluster/clusterharness"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/placement"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// result is one invoke as the driver saw it.
type result struct {
	host    string // X-Lambdaplane-Host
	payload map[string]any
	cold    bool // the REPORT line has an Init Duration
	err     error
}

func invoke(c *clusterharness.Cluster, via int, fn string, ev any, invType types.InvocationType) result {
	b, _ := json.Marshal(ev)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	in := &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: b, InvocationType: invType}
	if invType == "" || invType == types.InvocationTypeRequestResponse {
		in.LogType = types.LogTypeTail
	}
	out, err := c.Lambda(via).Invoke(ctx, in)
	if err != nil {
		return result{err: err}
	}
	var r result
	if raw, ok := middleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		r.host = raw.Header.Get("X-Lambdaplane-Host")
	}
	if len(out.Payload) > 0 {
		_ = json.Unmarshal(out.Payload, &r.payload)
	}
	if out.FunctionError != nil {
		r.err = fmt.Errorf("function error %s: %s", *out.FunctionError, out.Payload)
	}
	if out.LogResult != nil {
		l, _ := base64.StdEncoding.DecodeString(*out.LogResult)
		r.cold = strings.Contains(string(l), "Init Duration")
	}
	return r
}

func throttled(err error) bool {
	var tm *types.TooManyRequestsException
	return errors.As(err, &tm)
}

func create(t *testing.T, c *clusterharness.Cluster, via int, name string, mutate ...func(*lambda.CreateFunctionInput)) {
	t.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Role: aws.String(c.Role("probe")), Code: &types.FunctionCode{ZipFile: harness.ProbeZip}, Timeout: aws.Int32(30),
	}
	for _, m := range mutate {
		m(in)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Lambda(via).CreateFunction(ctx, in); err != nil {
		t.Fatalf("create %s through h%d: %v", name, via+1, err)
	}
}

func status(t *testing.T, c *clusterharness.Cluster, i int) *clusterStatus {
	t.Helper()
	st, err := c.Status(i)
	if err != nil {
		t.Fatalf("cluster status from h%d: %v", i+1, err)
	}
	return st
}

type clusterStatus = server.ClusterStatus

func aliveCount(st *clusterStatus) int {
	n := 0
	for _, h := range st.Hosts {
		if h.Alive {
			n++
		}
	}
	return n
}

// home is the host a function is homed on among the live ones.
func home(c *clusterharness.Cluster, fn string, live ...int) string {
	var hosts []cluster.Host
	for _, i := range live {
		hosts = append(hosts, cluster.Host{ID: c.Hosts[i].ID})
	}
	return cluster.Rank(placement.HomeKey(c.Account, fn), hosts)[0].ID
}

func index(c *clusterharness.Cluster, id string) int {
	for i, h := range c.Hosts {
		if h.ID == id {
			return i
		}
	}
	return -1
}

// reportedRequests counts the distinct request ids with a REPORT line in
// fn's stored logs (read through host via).
func reportedRequests(t *testing.T, c *clusterharness.Cluster, via int, fn string) map[string]bool {
	t.Helper()
	cl := &client.Client{Endpoint: c.Hosts[via].API, Region: "us-east-1", Creds: c.Keys, HTTP: c.HTTP}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.Do(ctx, "lambda", http.MethodGet, "/_lambdaplane/logs/"+fn, nil)
	if err != nil {
		t.Fatalf("logs of %s: %v", fn, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.Index(l, "REPORT RequestId: "); i >= 0 {
			id := strings.Fields(l[i+len("REPORT RequestId: "):])
			if len(id) > 0 {
				out[id[0]] = true
			}
		}
	}
	return out
}

func TestCluster(t *testing.T) {
	harness.RequireRoot(t)
	t0 := time.Now()
	c := clusterharness.New(t, clusterharness.Options{Args: []string{"--account-concurrency", "100"}})
	t.Logf("three hosts ready in %s", time.Since(t0).Round(time.Millisecond))
	all := []int{0, 1, 2}

	t.Run("Forms", func(t *testing.T) { waitReplicated(t, c, time.Minute) })

	t.Run("AnyHostAndUpdates", func(t *testing.T) {
		create(t, c, 0, "anyhost")
		want := home(c, "anyhost", all...)
		for _, via := range []int{1, 2} {
			r := invoke(c, via, "anyhost", map[string]any{"name": "x"}, "")
			if r.err != nil {
				t.Fatalf("invoke through h%d: %v", via+1, r.err)
			}
			if r.host != want {
				t.Errorf("invoke through h%d ran on %q, want the home %s", via+1, r.host, want)
			}
		}
		// An update through h3 is never followed by old code anywhere.
		ctx := context.Background()
		for n := 1; n <= 4; n++ {
			v := fmt.Sprint(n)
			if _, err := c.Lambda(2).UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
				FunctionName: aws.String("anyhost"), Environment: &types.Environment{Variables: map[string]string{"GEN": v}},
			}); err != nil {
				t.Fatalf("update %d through h3: %v", n, err)
			}
			for _, via := range all {
				r := invoke(c, via, "anyhost", map[string]any{"action": "env"}, "")
				if r.err != nil {
					t.Fatalf("invoke through h%d after update %d: %v", via+1, n, r.err)
				}
				env, _ := r.payload["env"].(map[string]any)
				if env["GEN"] != v {
					t.Fatalf("through h%d right after update %d (through h3) the function ran with GEN=%v: old configuration", via+1, n, env["GEN"])
				}
			}
		}
	})

	t.Run("StickyHome", func(t *testing.T) {
		create(t, c, 1, "sticky")
		want := home(c, "sticky", all...)
		cold, hosts := 0, map[string]int{}
		for n := 0; n < 100; n++ {
			r := invoke(c, n%3, "sticky", map[string]any{"name": fmt.Sprint(n)}, "")
			if r.err != nil {
				t.Fatalf("invoke %d through h%d: %v", n, n%3+1, r.err)
			}
			hosts[r.host]++
			if r.cold {
				cold++
			}
		}
		if cold != 1 || len(hosts) != 1 || hosts[want] != 100 {
			t.Errorf("100 invokes over three APIs: %d cold starts (want 1), ran on %v (want all on %s)", cold, hosts, want)
		}
		// Figures (not asserted): warm invokes through the home and through
		// a host that forwards to it.
		hi := index(c, want)
		fwd := (hi + 1) % 3
		lat := func(via int) (p50, p90 time.Duration) {
			var ds []time.Duration
			for n := 0; n < 100; n++ {
				t0 := time.Now()
				if r := invoke(c, via, "sticky", map[string]any{}, types.InvocationTypeRequestResponse); r.err != nil {
					t.Fatalf("warm invoke through h%d: %v", via+1, r.err)
				}
				ds = append(ds, time.Since(t0))
			}
			slices.Sort(ds)
			return ds[50], ds[90]
		}
		h50, h90 := lat(hi)
		f50, f90 := lat(fwd)
		t.Logf("BENCH warm invoke through the home %s: p50 %s p90 %s; through %s (forwarded): p50 %s p90 %s; forwarding adds %s at p50",
			want, h50, h90, c.Hosts[fwd].ID, f50, f90, f50-h50)
	})

	t.Run("Limits", func(t *testing.T) {
		ctx := context.Background()
		create(t, c, 0, "reserved")
		create(t, c, 0, "hog")
		create(t, c, 0, "acct")
		if _, err := c.Lambda(0).PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("reserved"), ReservedConcurrentExecutions: aws.Int32(2)}); err != nil {
			t.Fatal(err)
		}
		burst := func(fn string, n int) (ok, tooMany int, other []error) {
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := invoke(c, i%3, fn, map[string]any{"action": "sleep", "sleepMs": 2500}, "")
					mu.Lock()
					defer mu.Unlock()
					switch {
					case r.err == nil:
						ok++
					case throttled(r.err):
						tooMany++
					default:
						other = append(other, r.err)
					}
				}()
			}
			wg.Wait()
			return
		}
		// Warm both environments first, so that the burst is about limits.
		burst("reserved", 2)
		ok, tm, other := burst("reserved", 6)
		if ok != 2 || tm != 4 || len(other) > 0 {
			t.Errorf("reserved concurrency 2, six concurrent invokes across hosts: %d ran, %d throttled, other errors %v (want 2 and 4)", ok, tm, other)
		}
		// Account limit 100; reservations 2 + 88 leave 10 unreserved.
		if _, err := c.Lambda(1).PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hog"), ReservedConcurrentExecutions: aws.Int32(88)}); err != nil {
			t.Fatal(err)
		}
		ok, tm, other = burst("acct", 14)
		if ok != 10 || tm != 4 || len(other) > 0 {
			t.Errorf("10 unreserved of the account, 14 concurrent invokes across hosts: %d ran, %d throttled, other errors %v (want 10 and 4)", ok, tm, other)
		}
		if _, err := c.Lambda(2).DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("hog")}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Async", func(t *testing.T) {
		create(t, c, 2, "events")
		before := map[string]uint64{}
		for _, h := range status(t, c, 0).Hosts {
			before[h.ID] = h.Ran
		}
		ids := map[string]bool{}
		for n := 0; n < 300; n++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := c.Lambda(n%3).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("events"), InvocationType: types.InvocationTypeEvent,
				Payload: []byte(fmt.Sprintf(`{"action":"sleep","sleepMs":20,"name":"%d"}`, n))})
			cancel()
			if err != nil {
				t.Fatalf("event %d through h%d: %v", n, n%3+1, err)
			}
			if raw, ok := middleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
				ids[raw.Header.Get("X-Amzn-RequestId")] = true
			}
		}
		harness.Eventually(t, 2*time.Minute, "300 Event invokes run", func() bool {
			got := reportedRequests(t, c, 1, "events")
			n := 0
			for id := range ids {
				if got[id] {
					n++
				}
			}
			return n == len(ids) && n == 300
		})
		worked := 0
		for _, h := range status(t, c, 0).Hosts {
			if h.Ran > before[h.ID] {
				worked++
			}
			t.Logf("host %s ran %d invocations during the Event burst", h.ID, h.Ran-before[h.ID])
		}
		if worked < 2 {
			t.Errorf("only %d host did the Event work", worked)
		}
	})

	t.Run("KillHomeAndLeader", func(t *testing.T) {
		st := status(t, c, 0)
		leader := st.Leader
		// A function homed on the leader.
		fn := ""
		for n := 0; n < 200 && fn == ""; n++ {
			if name := fmt.Sprintf("victim%d", n); home(c, name, all...) == leader {
				fn = name
			}
		}
		li := index(c, leader)
		var others []int
		for _, i := range all {
			if i != li {
				others = append(others, i)
			}
		}
		create(t, c, others[0], fn)
		if r := invoke(c, others[0], fn, map[string]any{}, ""); r.err != nil || r.host != leader {
			t.Fatalf("warm-up of %s: host %q err %v (want %s)", fn, r.host, r.err, leader)
		}
		create(t, c, others[0], "acked")
		// Acknowledged events in flight when the leader dies.
		ids := map[string]bool{}
		for n := 0; n < 30; n++ {
			out, err := c.Lambda(n%3).Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("acked"), InvocationType: types.InvocationTypeEvent,
				Payload: []byte(`{"action":"sleep","sleepMs":400}`)})
			if err != nil {
				t.Fatalf("event %d: %v", n, err)
			}
			if raw, ok := middleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
				ids[raw.Header.Get("X-Amzn-RequestId")] = true
			}
		}
		killed := time.Now()
		c.Hosts[li].Kill()
		var took time.Duration
		seen := map[string]bool{}
		for time.Since(killed) < 60*time.Second {
			r := invoke(c, others[len(others)-1], fn, map[string]any{}, "")
			if r.err != nil && !seen[r.err.Error()] {
				seen[r.err.Error()] = true
				t.Logf("%s after the kill: %v", time.Since(killed).Round(time.Millisecond), r.err)
			}
			if r.err == nil {
				took = time.Since(killed)
				if r.host == leader {
					t.Errorf("invoke after the kill ran on the dead host %s", leader)
				}
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("BENCH kill-to-first-success: %s (host %s killed: home of %s and cluster leader)", took.Round(time.Millisecond), leader, fn)
		if took == 0 || took > 10*time.Second {
			t.Errorf("after SIGKILL of %s, invokes of %s through the other hosts succeeded after %v (want within 10 s)", leader, fn, took)
		}
		// Through both survivors.
		for _, via := range others {
			if r := invoke(c, via, fn, map[string]any{}, ""); r.err != nil {
				t.Errorf("invoke through h%d after the kill: %v", via+1, r.err)
			}
		}
		harness.Eventually(t, 90*time.Second, "every acknowledged event ran", func() bool {
			got := reportedRequests(t, c, others[0], "acked")
			for id := range ids {
				if !got[id] {
					return false
				}
			}
			return true
		})
		// Limits hold again once the dead host's leases lapsed.
		time.Sleep(placement.LeaseTTL)
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, tm := 0, 0
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := invoke(c, others[i%2], "reserved", map[string]any{"action": "sleep", "sleepMs": 2500}, "")
				mu.Lock()
				defer mu.Unlock()
				if r.err == nil {
					ok++
				} else if throttled(r.err) {
					tm++
				} else {
					t.Errorf("reserved invoke after the kill: %v", r.err)
				}
			}()
		}
		wg.Wait()
		if ok != 2 || tm != 4 {
			t.Errorf("after the kill, reserved concurrency 2 with six concurrent invokes: %d ran, %d throttled", ok, tm)
		}
		// Restart: it rejoins and deletes nothing of the others'. A
		// function homed on a survivor (whichever way the ranking goes
		// with all three back) stays warm there, and the survivors'
		// service routers stay.
		keep := ""
		for n := 0; n < 200 && keep == ""; n++ {
			name := fmt.Sprintf("keeper%d", n)
			if h := home(c, name, all...); h != leader {
				keep = name
			}
		}
		create(t, c, others[0], keep)
		warm := invoke(c, others[0], keep, map[string]any{}, "")
		if warm.err != nil {
			t.Fatalf("warm-up of %s: %v", keep, warm.err)
		}
		var svcs []string
		for _, i := range others {
			svcs = append(svcs, c.Hosts[i].Prefix+"-svc")
		}
		if err := c.Hosts[li].Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.Hosts[li].WaitReady(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
		waitReplicated(t, c, 90*time.Second)
		for _, n := range svcs {
			if !netnsExists(n) {
				t.Errorf("after %s restarted, the service router %s of another host is gone", leader, n)
			}
		}
		if r := invoke(c, li, keep, map[string]any{}, ""); r.err != nil || r.cold || r.host != warm.host {
			t.Errorf("after %s restarted, %s (warm on %s) through it: host %q, cold %v, err %v (want the warm environment on %s)", leader, keep, warm.host, r.host, r.cold, r.err, warm.host)
		}
		if r := invoke(c, li, "anyhost", map[string]any{}, ""); r.err != nil {
			t.Errorf("invoke through the restarted host: %v", r.err)
		}
	})

	t.Run("Partition", func(t *testing.T) {
		p := 2
		h := c.Hosts[p]
		if err := h.Partition(); err != nil {
			t.Fatal(err)
		}
		healed := false
		defer func() {
			if !healed {
				_ = h.Heal()
			}
		}()
		harness.Eventually(t, 20*time.Second, "the partitioned host sees itself alone", func() bool {
			st, err := c.Status(p)
			return err == nil && !st.Quorate
		})
		// It stops admitting.
		r := invoke(c, p, "anyhost", map[string]any{}, "")
		if !throttled(r.err) {
			t.Errorf("invoke through the partitioned host: err %v (want TooManyRequestsException)", r.err)
		}
		// Its writes fail cleanly (an error, in bounded time).
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		_, err := c.Lambda(p).CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String("cutoff"), Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
			Role: aws.String(c.Role("probe")), Code: &types.FunctionCode{ZipFile: harness.ProbeZip},
		})
		cancel()
		if err == nil {
			t.Errorf("CreateFunction through the partitioned host succeeded")
		} else {
			t.Logf("CreateFunction through the partitioned host failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
		}
		// The majority carries on.
		// (The store's streams led by the cut-off host elect new leaders
		// among the majority first: up to ~10 s.)
		create(t, c, 0, "during-partition")
		var lastErr error
		harness.Eventually(t, 30*time.Second, "an invoke through the majority during the partition", func() bool {
			r := invoke(c, 1, "during-partition", map[string]any{}, "")
			if r.err != nil && (lastErr == nil || r.err.Error() != lastErr.Error()) {
				t.Logf("invoke through the majority during the partition: %v", r.err)
			}
			lastErr = r.err
			return r.err == nil
		})
		if err := h.Heal(); err != nil {
			t.Fatal(err)
		}
		healed = true
		harness.Eventually(t, 60*time.Second, "the healed host rejoins and admits again", func() bool {
			st, err := c.Status(p)
			if err != nil || !st.Quorate || aliveCount(st) != 3 {
				return false
			}
			r := invoke(c, p, "during-partition", map[string]any{}, "")
			return r.err == nil
		})
	})
}

func netnsExists(name string) bool {
	for _, n := range clusterharness.Netns(strings.SplitN(name, "-", 2)[0]) {
		if n == name {
			return true
		}
	}
	return false
}

// waitReplicated waits until every host sees 3/3 hosts alive, a leader, and
// every stream and bucket with 3 replicas, all current.
func waitReplicated(t *testing.T, c *clusterharness.Cluster, timeout time.Duration) {
	t.Helper()
	last := ""
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for i := range c.Hosts {
			st, err := c.Status(i)
			if err != nil {
				ok, last = false, fmt.Sprintf("h%d: %v", i+1, err)
				break
			}
			if aliveCount(st) != 3 || st.Leader == "" || !st.Quorate || len(st.Streams) < 5 {
				ok, last = false, fmt.Sprintf("h%d: %d alive, leader %q, quorate %v, %d streams", i+1, aliveCount(st), st.Leader, st.Quorate, len(st.Streams))
				break
			}
			for _, s := range st.Streams {
				if s.Replicas != 3 || s.Current != 3 {
					ok, last = false, fmt.Sprintf("h%d: stream %s: %d replicas configured, %d current", i+1, s.Name, s.Replicas, s.Current)
					break
				}
			}
			if !ok {
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not fully replicated after %s: %s", timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
