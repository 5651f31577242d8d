// Command handler is a Go Lambda function built with the real aws-lambda-go
// runtime client; the runtimeapi tests run it against the Server.
package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Event selects what the handler does.
type Event struct {
	Op   string `json:"op"`
	Data string `json:"data,omitempty"`
	N    int    `json:"n,omitempty"`
}

// Output is the handler's answer for ops that succeed.
type Output struct {
	Op         string            `json:"op"`
	Data       string            `json:"data,omitempty"`
	RequestID  string            `json:"requestId,omitempty"`
	ARN        string            `json:"arn,omitempty"`
	DeadlineMs int64             `json:"deadlineMs,omitempty"`
	Custom     map[string]string `json:"custom,omitempty"`
	IdentityID string            `json:"identityId,omitempty"`
}

// CustomError gives the error a type name the runtime reports as errorType.
type CustomError struct{ Reason string }

func (e *CustomError) Error() string { return "custom failure: " + e.Reason }

func handle(ctx context.Context, ev Event) (any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	switch ev.Op {
	case "echo":
		return Output{Op: ev.Op, Data: ev.Data}, nil
	case "context":
		dl, _ := ctx.Deadline()
		return Output{
			Op:         ev.Op,
			RequestID:  lc.AwsRequestID,
			ARN:        lc.InvokedFunctionArn,
			DeadlineMs: dl.UnixMilli(),
			Custom:     lc.ClientContext.Custom,
			IdentityID: lc.Identity.CognitoIdentityID,
		}, nil
	case "error":
		return nil, &CustomError{Reason: ev.Data}
	case "plainerror":
		return nil, errors.New(ev.Data)
	case "panic":
		panic(fmt.Sprintf("boom: %s", ev.Data))
	case "big":
		return strings.Repeat("x", ev.N), nil
	case "sleep":
		d, err := time.ParseDuration(ev.Data)
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return Output{Op: ev.Op}, nil
	}
	return nil, fmt.Errorf("unknown op %q", ev.Op)
}

func main() { lambda.Start(handle) }
