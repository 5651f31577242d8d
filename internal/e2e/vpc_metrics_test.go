package e2e

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	dto "github.com/prometheus/client_model/go"
)

// gaugeWith returns the value of family's sample whose labels include
// want, and whether there is one.
func gaugeWith(mf map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	f := mf[family]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestVPCMetrics: after a VPC function is created, /metrics reports its
// shared ENI and the subnet's free addresses as DescribeSubnets does.
func TestVPCMetrics(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	c := e.ec2()
	n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
	acct := e.srv.Account.ID
	e.createProbe("metered", func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String("arn:aws:iam::" + acct + ":role/vpc")
		in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}
	})
	e.waitState(t, e.lambda, "metered", types.StateActive)
	if m, _, err := invokeProbe(t, e.lambda, "metered", map[string]any{"name": "m"}); err != nil || m["hello"] != "m" {
		t.Fatalf("invoke: %v %v", m, err)
	}
	free := e.freeAddresses(t, c, n.subnet)
	var enis, gotFree float64
	eventually(t, 10*time.Second, "VPC gauges on /metrics", func() bool {
		mf := scrape(t, e)
		var ok1, ok2 bool
		enis, ok1 = gaugeWith(mf, "lambdaplane_enis", map[string]string{"account": acct, "subnet": n.subnet, "type": "hyperplane"})
		gotFree, ok2 = gaugeWith(mf, "lambdaplane_subnet_free_addresses", map[string]string{"account": acct, "subnet": n.subnet})
		return ok1 && ok2 && enis == 1 && gotFree == float64(free)
	})
	if enis != 1 || gotFree != float64(free) {
		t.Fatalf("lambdaplane_enis{type=hyperplane} = %v (want 1), lambdaplane_subnet_free_addresses = %v (DescribeSubnets: %d)", enis, gotFree, free)
	}
}
