// Command tcpconnect is the bench's network function: it opens a TCP
// connection to the address given in the event and reports how long the
// connect took and the addresses on both ends (for the VPC scenarios: the
// peer sees the ENI's address).
package main

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Addr      string `json:"addr"`
	TimeoutMs int    `json:"timeoutMs"`
	Read      bool   `json:"read"` // read the peer's greeting (up to 256 bytes)
}

type result struct {
	Local     string  `json:"local"`
	Remote    string  `json:"remote"`
	ConnectMs float64 `json:"connectMs"`
	Greeting  string  `json:"greeting,omitempty"`
}

func handle(ctx context.Context, ev event) (*result, error) {
	if ev.Addr == "" {
		return nil, errors.New(`event needs "addr": "host:port"`)
	}
	timeout := time.Duration(ev.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	t := time.Now()
	c, err := d.DialContext(ctx, "tcp", ev.Addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	r := &result{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), ConnectMs: float64(time.Since(t).Microseconds()) / 1000}
	if ev.Read {
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		b, _ := io.ReadAll(io.LimitReader(c, 256))
		r.Greeting = string(b)
	}
	return r, nil
}

func main() { lambda.Start(handle) }
