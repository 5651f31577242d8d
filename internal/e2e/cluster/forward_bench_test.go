package cluster

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/cluster/clusterharness"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestForwardOverhead measures a warm invoke through the function's home
// against one through another host (forwarded over NATS), interleaved so
// that the machine's drift hits both alike, in three rounds. A benchmark: it runs with
// LAMBDAPLANE_BENCH=1 and prints the figures (issue 14's target: at most
// +0.3 ms at p50); every invoke must run on the home.
func TestForwardOverhead(t *testing.T) {
	harness.RequireRoot(t)
	if os.Getenv("LAMBDAPLANE_BENCH") != "1" {
		t.Skip("a benchmark: LAMBDAPLANE_BENCH=1 runs it")
	}
	type setup struct {
		name     string
		c        *clusterharness.Cluster
		want     string
		home, fw int
	}
	c := clusterharness.New(t, clusterharness.Options{})
	create(t, c, 0, "fwdbench")
	want := home(c, "fwdbench", 0, 1, 2)
	hi := index(c, want)
	setups := []*setup{{name: "NATS request/reply", c: c, want: want, home: hi, fw: (hi + 1) % 3}}
	for _, su := range setups {
		for n := 0; n < 20; n++ { // warm both paths
			for _, via := range []int{su.home, su.fw} {
				if r := invoke(su.c, via, "fwdbench", map[string]any{}, types.InvocationTypeRequestResponse); r.err != nil {
					t.Fatal(r.err)
				}
			}
		}
	}
	const rounds, n = 3, 200
	for round := 1; round <= rounds; round++ {
		for _, su := range setups {
			c, want, hi, fwd := su.c, su.want, su.home, su.fw
			var viaHome, viaFwd []time.Duration
			for i := 0; i < n; i++ {
				for _, via := range []int{hi, fwd} {
					t0 := time.Now()
					r := invoke(c, via, "fwdbench", map[string]any{}, types.InvocationTypeRequestResponse)
					d := time.Since(t0)
					if r.err != nil {
						t.Fatalf("invoke through h%d: %v", via+1, r.err)
					}
					if r.host != want {
						t.Fatalf("invoke through h%d ran on %s, want the home %s", via+1, r.host, want)
					}
					if via == hi {
						viaHome = append(viaHome, d)
					} else {
						viaFwd = append(viaFwd, d)
					}
				}
			}
			slices.Sort(viaHome)
			slices.Sort(viaFwd)
			p := func(ds []time.Duration, q float64) string {
				return fmt.Sprintf("%.3f", float64(ds[int(q*float64(len(ds)-1))].Microseconds())/1000)
			}
			t.Logf("BENCH round %d, forwarding over %s (n=%d each, interleaved): warm invoke through the home p50 %s ms p90 %s; forwarded p50 %s ms p90 %s; forwarding adds %.3f ms at p50",
				round, su.name, n, p(viaHome, 0.5), p(viaHome, 0.9), p(viaFwd, 0.5), p(viaFwd, 0.9),
				float64((viaFwd[n/2]-viaHome[n/2]).Microseconds())/1000)
		}
	}
}
