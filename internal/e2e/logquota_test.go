package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/logs"
)

// storedLog returns a function's stored log records, concatenated.
func (e *env) storedLog(acct, fn string) string {
	e.t.Helper()
	var b strings.Builder
	if err := e.srv.Logs().Follow(context.Background(), acct, fn, 0, false, func(r logs.Record) error {
		b.Write(r.Text)
		return nil
	}); err != nil {
		e.t.Fatalf("read logs of %s: %v", fn, err)
	}
	return b.String()
}

// TestLogQuotaFloodKeepsOtherTenants (issue 12): functions printing far
// more than their log quota, and together more than their account's,
// lose only their own oldest records; a quiet function of the same account
// and one of another account keep theirs.
func TestLogQuotaFloodKeepsOtherTenants(t *testing.T) {
	t.Parallel()
	const fnQuota, acctQuota = 1 << 20, 2 << 20
	e := startServer(t, func(c *serverConfig) {
		c.LogQuota = logs.Quota{FunctionBytes: fnQuota, AccountBytes: acctQuota}
		c.LogRate = logs.RateLimit{Rate: -1} // the quota alone is under test
	})
	ctx := context.Background()
	b, err := e.srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.EnsureExecutionRole(ctx, b.ID, "r", false); err != nil {
		t.Fatal(err)
	}
	lb := e.lambdaFor(b.Keys[0].ID, b.Keys[0].Secret)
	if _, err := lb.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("quiet"), Runtime: "provided.al2023",
		Handler: aws.String("bootstrap"), Role: aws.String("arn:aws:iam::" + b.ID + ":role/r"), Code: &types.FunctionCode{ZipFile: probeZip}}); err != nil {
		t.Fatal(err)
	}
	e.createProbe("quiet")
	floods := []string{"flood1", "flood2", "flood3"}
	for _, f := range floods {
		e.createProbe(f)
	}

	e.invokeJSON("quiet", map[string]any{"print": "quiet-in-account-a"})
	ev, _ := json.Marshal(map[string]any{"print": "quiet-in-account-b"})
	if _, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("quiet"), Payload: ev}); err != nil {
		t.Fatal(err)
	}

	// 3 functions × 12 invokes × 150 KB: 1.8 MB each into a 1 MB quota,
	// 5.4 MB into the account's 2 MB.
	pad := strings.Repeat("x", 150<<10)
	const n = 12
	for i := range n {
		for _, f := range floods {
			e.invokeJSON(f, map[string]any{"print": fmt.Sprintf("%s-%02d-%s", f, i, pad)})
		}
	}

	// Trims run in the background: wait until they are done.
	sizes := map[string]int{}
	eventually(t, 30*time.Second, "flooding functions trimmed to their quotas", func() bool {
		sum := 0
		for _, f := range floods {
			sizes[f] = len(e.storedLog(e.srv.Account.ID, f))
			sum += sizes[f]
		}
		for _, f := range floods {
			if sizes[f] > fnQuota {
				return false
			}
		}
		return sum <= acctQuota
	})
	for _, f := range floods {
		l := e.storedLog(e.srv.Account.ID, f)
		if !strings.Contains(l, fmt.Sprintf("%s-%02d-", f, n-1)) || strings.Contains(l, f+"-00-") {
			t.Fatalf("%s (%d bytes): want its newest invoke kept and its oldest gone", f, len(l))
		}
	}
	for _, c := range []struct{ acct, want string }{{e.srv.Account.ID, "quiet-in-account-a"}, {b.ID, "quiet-in-account-b"}} {
		l := e.storedLog(c.acct, "quiet")
		if !strings.Contains(l, c.want) || strings.Count(l, "REPORT RequestId") != 1 {
			t.Fatalf("quiet function of account %s lost its log to a flood: %q", c.acct, l)
		}
	}
	t.Logf("flooding functions keep %v bytes", sizes)
}

// TestLogRateLimitDropsWithMarker (issue 12): an environment writing more
// than its output rate allows has the excess dropped, and the invoke's log
// (stored and LogType=Tail) says how much.
func TestLogRateLimitDropsWithMarker(t *testing.T) {
	t.Parallel()
	limit := logs.RateLimit{Rate: 1024, Burst: 16 << 10}
	e := startServer(t, func(c *serverConfig) { c.LogRate = limit })
	e.createProbe("loud")
	text := strings.Repeat("y", 200<<10)
	ev, _ := json.Marshal(map[string]any{"print": text})
	out, err := e.lambda.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("loud"), Payload: ev, LogType: types.LogTypeTail})
	if err != nil {
		t.Fatal(err)
	}
	if out.FunctionError != nil {
		t.Fatalf("function error %s: %s", *out.FunctionError, out.Payload)
	}
	tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	marker := regexp.MustCompile(`\[lambdaplane\] (\d+) bytes of function output dropped: over the log rate limit \(1024 bytes/s, burst 16384 bytes\)\n`)
	if !marker.Match(tail) || !strings.Contains(string(tail), "REPORT RequestId") {
		t.Fatalf("Tail log has no drop marker or REPORT line: %q", tail)
	}

	// The output that passed and the dropped bytes the markers count add up
	// to what the function wrote (its text and Println's newline).
	l := e.storedLog(e.srv.Account.ID, "loud")
	ms := marker.FindAllStringSubmatch(l, -1)
	dropped := 0
	for _, m := range ms {
		n, _ := strconv.Atoi(m[1])
		dropped += n
	}
	end := strings.Index(l, "END RequestId")
	if end < 0 {
		t.Fatalf("no END line: %q", l[max(0, len(l)-600):])
	}
	body := l[strings.Index(l, "\n")+1 : end] // between START and END
	passed := strings.Count(marker.ReplaceAllString(body, ""), "y")
	if len(ms) == 0 || passed < 4096 || dropped == 0 {
		t.Fatalf("%d markers, %d bytes passed, %d dropped: %q", len(ms), passed, dropped, l[max(0, len(l)-600):])
	}
	if passed+dropped != len(text)+1 && passed+dropped != len(text) { // the newline passed, or was dropped
		t.Fatalf("passed %d + dropped %d bytes, the function wrote %d", passed, dropped, len(text)+1)
	}
	if !strings.Contains(l, "START RequestId") || !strings.Contains(l, "REPORT RequestId") {
		t.Fatalf("platform lines missing: %q", l[max(0, len(l)-600):])
	}
}
