// Command gostream is a function URL handler written with aws-lambda-go's
// streaming response type, unmodified: three chunks 400 ms apart after a
// 202 with a header and a cookie.
package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(ctx context.Context, req events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error) {
	r, w := io.Pipe()
	go func() {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "go%d %s\n", i, req.RawPath)
			time.Sleep(400 * time.Millisecond)
		}
		w.Close()
	}()
	return &events.LambdaFunctionURLStreamingResponse{
		StatusCode: 202,
		Headers:    map[string]string{"Content-Type": "text/plain", "X-Go": "yes"},
		Cookies:    []string{"g=1"},
		Body:       r,
	}, nil
}

func main() { lambda.Start(handle) }
