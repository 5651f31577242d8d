package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/cluster/clusterharness"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestClusterProvisioned: provisioned concurrency put through a host that
// is not the function's home is kept on the home, where its invokes run:
// through every host, the version's invokes run on the home without an
// Init Duration.
func TestClusterProvisioned(t *testing.T) {
	harness.RequireRoot(t)
	c := clusterharness.New(t, clusterharness.Options{})
	create(t, c, 0, "pc")
	want := home(c, "pc", 0, 1, 2)
	other := (index(c, want) + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	v, err := c.Lambda(other).PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("pc")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lambda(other).PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("pc"), Qualifier: v.Version, ProvisionedConcurrentExecutions: aws.Int32(2),
	}); err != nil {
		t.Fatalf("put provisioned concurrency through h%d: %v", other+1, err)
	}
	harness.Eventually(t, 90*time.Second, "provisioned concurrency READY", func() bool {
		out, err := c.Lambda(other).GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: v.Version})
		return err == nil && out.Status == types.ProvisionedConcurrencyStatusEnumReady
	})
	for _, via := range []int{0, 1, 2} {
		r := invoke(c, via, "pc:"+aws.ToString(v.Version), map[string]any{}, types.InvocationTypeRequestResponse)
		if r.err != nil {
			t.Fatalf("invoke through h%d: %v", via+1, r.err)
		}
		if r.host != want || r.cold {
			t.Errorf("invoke through h%d ran on %s (home %s), cold start %v: want the home's provisioned environments", via+1, r.host, want, r.cold)
		}
	}
}
