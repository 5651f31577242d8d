// Command hello is the bench's hello-world function: an ordinary
// aws-lambda-go handler that greets the caller, or fails when asked to.
package main

import (
	"context"
	"errors"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Name string `json:"name"`
	Fail bool   `json:"fail"`
}

func handle(ctx context.Context, ev event) (map[string]string, error) {
	if ev.Fail {
		return nil, errors.New("failing as asked: " + ev.Name)
	}
	return map[string]string{"hello": ev.Name}, nil
}

func main() { lambda.Start(handle) }
