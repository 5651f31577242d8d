package lambdamore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/logs"
)

// printer is a Python function printing the lines of its event.
const printer = `
def handler(event, context):
    for line in event.get("lines", []):
        print(line)
    return {"ok": True}
`

func apiErrCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func messages(evs []cwtypes.FilteredLogEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, strings.TrimSpace(aws.ToString(e.Message)))
	}
	return out
}

// TestLogsTailAndFilter: a function's invokes read back through the
// CloudWatch Logs API: aws logs tail (plain, --format short, --follow
// seeing a new invoke), DescribeLogGroups/Streams, GetLogEvents, and
// FilterLogEvents with term, phrase, exclusion, OR and JSON patterns,
// paged with nextToken; retention hides older records; errors in Logs'
// own format.
func TestLogsTailAndFilter(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	fn := "logfn"
	e.CreateFunction(fn, "python3.11", "app.handler", harness.Zip(t, map[string]string{"app.py": printer}))
	e.InvokeJSON(fn, map[string]any{"lines": []string{"alpha ERROR one", "beta WARN two"}})
	e.InvokeJSON(fn, map[string]any{"lines": []string{"gamma INFO three", `{"level":"ERROR","ms":250,"msg":"json-err"}`, `{"level":"INFO","ms":5,"msg":"json-ok"}`}})
	group := "/aws/lambda/" + fn
	cw := cloudwatchlogs.NewFromConfig(e.AWSConfig())

	// aws logs tail, plain and short.
	out := e.MustCLI(nil, "logs", "tail", group, "--since", "10m")
	for _, want := range []string{"START RequestId:", "alpha ERROR one", "gamma INFO three", "REPORT RequestId:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("aws logs tail: no %q in\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32} `).MatchString(out) {
		t.Fatalf("aws logs tail: no log stream name YYYY/MM/DD/[$LATEST]<id> in\n%s", out)
	}
	short := e.MustCLI(nil, "logs", "tail", group, "--since", "10m", "--format", "short")
	if !regexp.MustCompile(`(?m)^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2} beta WARN two$`).MatchString(short) {
		t.Fatalf("aws logs tail --format short:\n%s", short)
	}

	// Groups and streams.
	var groups struct {
		LogGroups []struct {
			LogGroupName string
			Arn          string
			StoredBytes  int64
		}
	}
	e.MustCLI(&groups, "logs", "describe-log-groups", "--log-group-name-prefix", "/aws/lambda/log")
	if len(groups.LogGroups) != 1 || groups.LogGroups[0].LogGroupName != group || groups.LogGroups[0].StoredBytes == 0 ||
		groups.LogGroups[0].Arn != "arn:aws:logs:us-east-1:"+e.Srv.Account.ID+":log-group:"+group+":*" {
		t.Fatalf("describe-log-groups: %+v", groups)
	}
	ds, err := cw.DescribeLogStreams(ctx, &cloudwatchlogs.DescribeLogStreamsInput{LogGroupName: aws.String(group), OrderBy: cwtypes.OrderByLastEventTime, Descending: aws.Bool(true)})
	if err != nil || len(ds.LogStreams) != 1 {
		t.Fatalf("DescribeLogStreams: %v %+v", err, ds)
	}
	stream := aws.ToString(ds.LogStreams[0].LogStreamName)
	if !strings.HasPrefix(stream, time.Now().UTC().Format("2006/01/02")+"/[$LATEST]") {
		t.Fatalf("stream name %q", stream)
	}
	var ev struct {
		Events []struct {
			Message   string
			Timestamp int64
		}
		NextForwardToken, NextBackwardToken string
	}
	e.MustCLI(&ev, "logs", "get-log-events", "--log-group-name", group, "--log-stream-name", stream, "--start-from-head", "--limit", "3")
	if len(ev.Events) != 3 || !strings.HasPrefix(ev.Events[0].Message, "START RequestId:") || ev.Events[1].Message != "alpha ERROR one\n" || !strings.HasPrefix(ev.NextForwardToken, "f/") {
		t.Fatalf("get-log-events --start-from-head --limit 3: %+v", ev)
	}
	next, err := cw.GetLogEvents(ctx, &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream), NextToken: aws.String(ev.NextForwardToken), Limit: aws.Int32(2)})
	if err != nil || len(next.Events) != 2 || !strings.HasPrefix(aws.ToString(next.Events[0].Message), "END RequestId:") || !strings.HasPrefix(aws.ToString(next.Events[1].Message), "REPORT RequestId:") {
		t.Fatalf("GetLogEvents with the forward token: %v %+v", err, next)
	}
	if _, err := cw.GetLogEvents(ctx, &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String(group), LogStreamName: aws.String("2020/01/01/[$LATEST]nope")}); apiErrCode(err) != "ResourceNotFoundException" {
		t.Fatalf("GetLogEvents of a missing stream: %v", err)
	}

	// FilterLogEvents patterns.
	filter := func(p string) []string {
		t.Helper()
		out, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), FilterPattern: aws.String(p)})
		if err != nil {
			t.Fatalf("FilterLogEvents %q: %v", p, err)
		}
		if len(out.SearchedLogStreams) != 1 || aws.ToString(out.SearchedLogStreams[0].LogStreamName) != stream {
			t.Fatalf("FilterLogEvents %q: searched streams %+v", p, out.SearchedLogStreams)
		}
		return messages(out.Events)
	}
	for p, want := range map[string][]string{
		"ERROR":                   {"alpha ERROR one", `{"level":"ERROR","ms":250,"msg":"json-err"}`},
		`"beta WARN"`:             {"beta WARN two"},
		"?WARN ?INFO":             {"beta WARN two", "gamma INFO three", `{"level":"INFO","ms":5,"msg":"json-ok"}`},
		"ERROR -json":             {"alpha ERROR one"},
		`{ $.level = "ERROR" }`:   {`{"level":"ERROR","ms":250,"msg":"json-err"}`},
		`{ $.ms < 10 || $.x = 1}`: {`{"level":"INFO","ms":5,"msg":"json-ok"}`},
		"nothing-matches-this":    nil,
	} {
		if got := filter(p); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("FilterLogEvents %q = %q, want %q", p, got, want)
		}
	}
	all := filter("")
	if len(all) != 2*3+2+3 { // START, END, REPORT per invoke and the printed lines
		t.Fatalf("FilterLogEvents without a pattern: %d events %q", len(all), all)
	}
	// Paging: 4 at a time gives the same events.
	var paged []string
	var token *string
	for pages := 0; ; pages++ {
		out, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), Limit: aws.Int32(4), NextToken: token})
		if err != nil || pages > 10 {
			t.Fatalf("FilterLogEvents page %d: %v", pages, err)
		}
		paged = append(paged, messages(out.Events)...)
		if token = out.NextToken; token == nil {
			break
		}
	}
	if strings.Join(paged, "|") != strings.Join(all, "|") {
		t.Fatalf("paged events %q, want %q", paged, all)
	}
	// A time range after every record: nothing.
	future := time.Now().Add(time.Hour).UnixMilli()
	if out, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), StartTime: aws.Int64(future)}); err != nil || len(out.Events) != 0 {
		t.Fatalf("FilterLogEvents from an hour ahead: %v %d events", err, len(out.Events))
	}
	// Errors.
	if _, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("/aws/lambda/nope")}); apiErrCode(err) != "ResourceNotFoundException" {
		t.Fatalf("FilterLogEvents on a missing group: %v", err)
	}
	if _, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), FilterPattern: aws.String(`{ $.level = `)}); apiErrCode(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "$.level") {
		t.Fatalf("FilterLogEvents with a broken pattern: %v", err)
	}

	// Retention: an event older than the group's retention is gone.
	old := time.Now().Add(-50 * time.Hour)
	if err := e.Srv.Logs().AppendNow(e.Srv.Account.ID, fn, logs.Record{Time: old, Version: "$LATEST", LogStream: stream, Text: []byte("ancient line\n")}); err != nil {
		t.Fatal(err)
	}
	if got := filter("ancient"); len(got) != 1 {
		t.Fatalf("old record before any retention: %q", got)
	}
	e.MustCLI(nil, "logs", "put-retention-policy", "--log-group-name", group, "--retention-in-days", "1")
	if got := filter("ancient"); len(got) != 0 {
		t.Fatalf("a 50-hour-old record with 1-day retention: %q", got)
	}
	if dg, err := cw.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(group)}); err != nil || len(dg.LogGroups) != 1 || aws.ToInt32(dg.LogGroups[0].RetentionInDays) != 1 {
		t.Fatalf("DescribeLogGroups after put-retention-policy: %v %+v", err, dg)
	}
	if _, err := cw.PutRetentionPolicy(ctx, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: aws.String(group), RetentionInDays: aws.Int32(2)}); apiErrCode(err) != "InvalidParameterException" {
		t.Fatalf("retention of 2 days: %v", err)
	}
	if _, err := cw.DeleteRetentionPolicy(ctx, &cloudwatchlogs.DeleteRetentionPolicyInput{LogGroupName: aws.String(group)}); err != nil {
		t.Fatal(err)
	}
	if got := filter("ancient"); len(got) != 1 {
		t.Fatalf("old record after the retention policy was deleted: %q", got)
	}

	// aws logs tail --follow sees an invoke made after it started.
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(tctx, "/usr/bin/aws", "--profile", "lambdaplane", "--region", "us-east-1", "--endpoint-url", e.Srv.Endpoint,
		"logs", "tail", group, "--follow", "--since", "1m", "--format", "short")
	cmd.Env = append(os.Environ(), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(e.Data, "credentials"),
		"AWS_CONFIG_FILE="+filepath.Join(e.Data, "config"), "AWS_EC2_METADATA_DISABLED=true")
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	harness.Eventually(t, 10*time.Second, "tail --follow printing the earlier invokes", func() bool { return strings.Contains(buf.String(), "gamma INFO three") })
	e.InvokeJSON(fn, map[string]any{"lines": []string{"delta after follow"}})
	harness.Eventually(t, 12*time.Second, "tail --follow printing a new invoke", func() bool { return strings.Contains(buf.String(), "delta after follow") })
	if n := strings.Count(buf.String(), "gamma INFO three"); n != 1 {
		t.Fatalf("tail --follow printed an event %d times:\n%s", n, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLoggingConfigJSON: LoggingConfig on Create/UpdateFunctionConfiguration
// (returned as set); in JSON format the records are Lambda's JSON shapes
// (platform.start / platform.report), the function sees
// AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL, and JSON lines below the
// ApplicationLogLevel are dropped; a custom LogGroup receives the records.
// A Python and a Node.js function.
func TestLoggingConfigJSON(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	cw := cloudwatchlogs.NewFromConfig(e.AWSConfig())
	py := `
import json, os
def handler(event, context):
    print(json.dumps({"level": "DEBUG", "message": "py-debug"}))
    print(json.dumps({"level": "ERROR", "message": "py-error"}))
    return {"format": os.environ.get("AWS_LAMBDA_LOG_FORMAT"), "level": os.environ.get("AWS_LAMBDA_LOG_LEVEL"), "group": os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")}
`
	node := `
exports.handler = async () => {
  console.info("node-info");
  console.warn("node-warn");
  return {format: process.env.AWS_LAMBDA_LOG_FORMAT, level: process.env.AWS_LAMBDA_LOG_LEVEL, group: process.env.AWS_LAMBDA_LOG_GROUP_NAME};
};
`
	e.CreateFunction("jsonpy", "python3.11", "app.handler", harness.Zip(t, map[string]string{"app.py": py}), func(in *lambda.CreateFunctionInput) {
		in.LoggingConfig = &lambdatypes.LoggingConfig{LogFormat: lambdatypes.LogFormatJson, ApplicationLogLevel: lambdatypes.ApplicationLogLevelWarn}
	})
	e.CreateFunction("jsonnode", "nodejs20.x", "index.handler", harness.Zip(t, map[string]string{"index.js": node}))
	// Node: JSON through UpdateFunctionConfiguration (Debian's awscli 2.9
	// predates LoggingConfig), to a custom group.
	if _, err := e.Lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("jsonnode"),
		LoggingConfig: &lambdatypes.LoggingConfig{LogFormat: lambdatypes.LogFormatJson, ApplicationLogLevel: lambdatypes.ApplicationLogLevelWarn,
			SystemLogLevel: lambdatypes.SystemLogLevelInfo, LogGroup: aws.String("/custom/node-logs")}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := e.Lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("jsonnode")})
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.LoggingConfig; l == nil || l.LogFormat != lambdatypes.LogFormatJson || l.ApplicationLogLevel != "WARN" || l.SystemLogLevel != "INFO" || aws.ToString(l.LogGroup) != "/custom/node-logs" {
		t.Fatalf("LoggingConfig = %+v", cfg.LoggingConfig)
	}
	if _, err := e.Lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("jsonpy"),
		LoggingConfig: &lambdatypes.LoggingConfig{LogFormat: lambdatypes.LogFormatText, ApplicationLogLevel: lambdatypes.ApplicationLogLevelWarn}}); apiErrCode(err) != "InvalidParameterValueException" {
		t.Fatalf("ApplicationLogLevel with LogFormat Text: %v", err)
	}
	for fn, group := range map[string]string{"jsonpy": "/aws/lambda/jsonpy", "jsonnode": "/custom/node-logs"} {
		out, _ := e.InvokeJSON(fn, map[string]any{})
		if out["format"] != "JSON" || out["level"] != "WARN" || out["group"] != group {
			t.Fatalf("%s sees %v", fn, out)
		}
		res, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group)})
		if err != nil {
			t.Fatalf("%s: FilterLogEvents %s: %v", fn, group, err)
		}
		msgs := strings.Join(messages(res.Events), "\n")
		if strings.Contains(msgs, "-debug") || strings.Contains(msgs, "-info") || !(strings.Contains(msgs, "py-error") || strings.Contains(msgs, "node-warn")) {
			t.Fatalf("%s: application records not filtered at WARN:\n%s", fn, msgs)
		}
		res, err = cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(group), FilterPattern: aws.String(`{ $.type = "platform.report" }`)})
		if err != nil || len(res.Events) != 1 || !strings.Contains(aws.ToString(res.Events[0].Message), `"durationMs"`) {
			t.Fatalf("%s: platform.report records: %v %q", fn, err, messages(res.Events))
		}
	}
	if _, err := cw.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("/aws/lambda/jsonnode")}); apiErrCode(err) != "ResourceNotFoundException" {
		t.Fatalf("the default group of a function writing to a custom one: %v", err)
	}
}
