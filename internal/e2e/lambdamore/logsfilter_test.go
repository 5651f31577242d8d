package lambdamore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestLogsFilterPatterns: FilterLogEvents over a function's access-log
// lines with space-delimited patterns ([ip, ..., status = 4*, bytes > n],
// ellipses, && and ||, quoted and bracketed fields) and %regex% patterns
// (alone, as terms, in JSON and field values), from aws-sdk-go-v2,
// Debian's awscli and boto3; a bad pattern is InvalidParameterException.
func TestLogsFilterPatterns(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	fn := "accesslog"
	e.CreateFunction(fn, "python3.11", "app.handler", harness.Zip(t, map[string]string{"app.py": printer}))
	e.InvokeJSON(fn, map[string]any{"lines": []string{
		`10.0.0.1 - alice [10/Oct/2026:13:25:15 +0000] "GET /index.html HTTP/1.1" 200 5120`,
		`10.0.0.2 - bob [10/Oct/2026:13:25:16 +0000] "GET /missing.png HTTP/1.1" 404 210`,
		`10.0.0.3 - carol [10/Oct/2026:13:25:17 +0000] "POST /api/orders HTTP/1.1" 503 98`,
		`{"level":"ERROR","code":"E1042","ms":870}`,
	}})
	group := "/aws/lambda/" + fn
	cw := cloudwatchlogs.NewFromConfig(e.AWSConfig())
	users := func(msgs []string) string {
		var out []string
		for _, m := range msgs {
			f := strings.Fields(m)
			switch {
			case strings.HasPrefix(m, "{"):
				out = append(out, "json")
			case len(f) > 2 && strings.HasPrefix(f[0], "10."):
				out = append(out, f[2])
			}
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	cases := []struct{ pattern, want string }{
		{`[ip, id, user, timestamp, request, status, bytes]`, "alice,bob,carol"},
		{`[ip, id, user, timestamp, request, status = 4* || status = 5*, bytes]`, "bob,carol"},
		{`[ip, id, user, timestamp, request = *.html*, ...]`, "alice"},
		{`[..., status >= 200 && status < 300, bytes > 1000]`, "alice"},
		{`[ip = 10.0.0.3, ...]`, "carol"},
		{`[ip, id, user = "bob", ...]`, "bob"},
		{`[..., request = %^POST /api/%, status, bytes]`, "carol"},
		{`[ip, ..., timestamp = *13:25:16*, ...]`, "bob"},
		{`%" [45]0\d %`, "bob,carol"},
		{`%/(index|missing)\.% -404`, "alice"},
		{`{ $.code = %^E10\d\d$% && $.ms > 500 }`, "json"},
	}
	for _, c := range cases {
		out, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), FilterPattern: aws.String(c.pattern)})
		if err != nil {
			t.Fatalf("FilterLogEvents %q: %v", c.pattern, err)
		}
		var msgs []string
		for _, ev := range out.Events {
			msgs = append(msgs, aws.ToString(ev.Message))
		}
		if got := users(msgs); got != c.want {
			t.Errorf("FilterLogEvents %q: %s, want %s (%q)", c.pattern, got, c.want, msgs)
		}
	}
	// Debian's awscli.
	var cli struct{ Events []struct{ Message string } }
	e.MustCLI(&cli, "logs", "filter-log-events", "--log-group-name", group, "--filter-pattern", `[ip, id, user, timestamp, request, status = 404, bytes]`)
	if len(cli.Events) != 1 || !strings.Contains(cli.Events[0].Message, "bob") {
		t.Fatalf("aws logs filter-log-events (space-delimited): %+v", cli.Events)
	}
	// boto3.
	got := e.Python(fmt.Sprintf(`
import boto3, json, os
l = boto3.client('logs', endpoint_url=os.environ['LP_ENDPOINT'])
r = l.filter_log_events(logGroupName=%q, filterPattern='%%carol|alice%%')
print(json.dumps(sorted(e['message'].split()[2] for e in r['events'])))
`, group))
	var names []string
	if err := json.Unmarshal([]byte(got), &names); err != nil || strings.Join(names, ",") != "alice,carol" {
		t.Fatalf("boto3 filter_log_events with a regex: %q %v", got, err)
	}
	for _, bad := range []string{`[ip, user`, `%unterminated`, `[ip, status > abc]`, `%a% %b% %c%`} {
		_, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), FilterPattern: aws.String(bad)})
		if apiErrCode(err) != "InvalidParameterException" {
			t.Errorf("FilterLogEvents %q: %v, want InvalidParameterException", bad, err)
		}
	}
}
