// Command hello is the bench's hello-world function: an ordinary
// aws-lambda-go handler that greets the caller, or fails when asked to.
package main

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Name string `json:"name"`
	Fail bool   `json:"fail"`
	// SleepMs holds the environment busy (at most 10 s), so that
	// simultaneous invokes overlap.
	SleepMs int `json:"sleepMs"`
}

func handle(ctx context.Context, ev event) (map[string]string, error) {
	if ev.Fail {
		return nil, errors.New("failing as asked: " + ev.Name)
	}
	if ev.SleepMs > 0 {
		select {
		case <-time.After(time.Duration(min(ev.SleepMs, 10000)) * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return map[string]string{"hello": ev.Name}, nil
}

func main() { lambda.Start(handle) }
