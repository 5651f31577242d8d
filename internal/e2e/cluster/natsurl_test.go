package cluster

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/cluster/clusterharness"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestClusterHostThroughNATSURL: a fourth host that joins with --nats-url
// (no store server of its own, through h1's client listener) is a full
// member: it is home of some functions and runs their invokes whichever
// host takes them, and it forwards the invokes of functions homed on the
// voting hosts to them.
func TestClusterHostThroughNATSURL(t *testing.T) {
	harness.RequireRoot(t)
	c := clusterharness.New(t, clusterharness.Options{NATSHosts: 1})
	all := []int{0, 1, 2, 3}
	st := status(t, c, 3)
	if n := aliveCount(st); n != 4 {
		t.Fatalf("h4's view: %d hosts alive, want 4: %+v", n, st.Hosts)
	}
	// A function homed on h4 and one homed on a voting host.
	var onH4, onVoter string
	for n := 0; n < 40 && (onH4 == "" || onVoter == ""); n++ {
		name := fmt.Sprintf("nu%d", n)
		switch h := home(c, name, all...); {
		case h == "h4" && onH4 == "":
			onH4 = name
		case h != "h4" && onVoter == "":
			onVoter = name
		default:
			continue
		}
		create(t, c, 3, name)
	}
	if onH4 == "" || onVoter == "" {
		t.Fatalf("no function names homed on h4 (%q) and on a voting host (%q) among 40", onH4, onVoter)
	}
	for _, fn := range []string{onH4, onVoter} {
		want := home(c, fn, all...)
		for _, via := range all {
			r := invoke(c, via, fn, map[string]any{}, types.InvocationTypeRequestResponse)
			if r.err != nil {
				t.Fatalf("invoke %s through h%d: %v", fn, via+1, r.err)
			}
			if r.host != want {
				t.Errorf("invoke %s through h%d ran on %s, want its home %s", fn, via+1, r.host, want)
			}
		}
	}
}
