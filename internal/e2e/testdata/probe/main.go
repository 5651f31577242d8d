// Command probe is the end-to-end test function: an ordinary aws-lambda-go
// handler whose event selects what it does.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action string   `json:"action"`
	Name   string   `json:"name"`
	Sleep  int      `json:"sleepMs"`
	MB     int      `json:"mb"`
	Addrs  []string `json:"addrs"`
	Paths  []string `json:"paths"`
	Print  string   `json:"print"`
	Addr   string   `json:"addr"`
	Cmds   []string `json:"cmds"`
}

var coldAt = time.Now()
var invocations int

type customError struct{ msg string }

func (e customError) Error() string { return e.msg }

func handle(ctx context.Context, ev event) (map[string]any, error) {
	invocations++
	if ev.Print != "" {
		fmt.Println(ev.Print)
	}
	lc, _ := lambdacontext.FromContext(ctx)
	out := map[string]any{"hello": ev.Name, "invocations": invocations, "requestId": lc.AwsRequestID, "arn": lc.InvokedFunctionArn}
	switch ev.Action {
	case "", "echo":
	case "error":
		return nil, customError{"something went wrong: " + ev.Name}
	case "panic":
		panic("probe panicked")
	case "sleep":
		time.Sleep(time.Duration(ev.Sleep) * time.Millisecond)
	case "exit":
		os.Exit(3)
	case "oom":
		var keep [][]byte
		for i := 0; i < ev.MB; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		out["allocated"] = len(keep)
	case "env":
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		out["env"] = env
		dl, _ := ctx.Deadline()
		out["deadlineInMs"] = time.Until(dl).Milliseconds()
	case "listen":
		// Serve TCP on :8080 for the rest of this environment's life.
		ln, err := net.Listen("tcp", ":8080")
		if err == nil {
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		addrs, _ := net.InterfaceAddrs()
		ips := []string{}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
				ips = append(ips, ipn.IP.String())
			}
		}
		out["ips"] = ips
	case "redis":
		// Talk RESP to a Redis server: each command is sent inline and its
		// one-line reply (or bulk string) collected.
		c, err := net.DialTimeout("tcp", ev.Addr, 2*time.Second)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", ev.Addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		r := bufio.NewReader(c)
		replies := []string{}
		for _, cmd := range ev.Cmds {
			if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
				return nil, err
			}
			line, err := r.ReadString('\n')
			if err != nil {
				return nil, fmt.Errorf("reply to %q: %w", cmd, err)
			}
			line = strings.TrimRight(line, "\r\n")
			if strings.HasPrefix(line, "$") && line != "$-1" {
				body, err := r.ReadString('\n')
				if err != nil {
					return nil, err
				}
				line = strings.TrimRight(body, "\r\n")
			}
			replies = append(replies, line)
		}
		out["replies"] = replies
		out["local"] = c.LocalAddr().String()
	case "probe":
		// What the sandbox lets the function see and do.
		pids := []string{}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if e.Name()[0] >= '0' && e.Name()[0] <= '9' {
				pids = append(pids, e.Name())
			}
		}
		out["pids"] = pids
		out["uid"] = os.Getuid()
		status, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "CapEff:") || strings.HasPrefix(l, "NoNewPrivs:") {
				k, v, _ := strings.Cut(l, ":")
				out[k] = strings.TrimSpace(v)
			}
		}
		writes := map[string]string{}
		for _, p := range ev.Paths {
			err := os.WriteFile(p, []byte("x"), 0o644)
			if err != nil {
				writes[p] = err.Error()
			} else {
				writes[p] = "ok"
				os.Remove(p)
			}
		}
		out["writes"] = writes
		dials := map[string]string{}
		for _, a := range ev.Addrs {
			c, err := net.DialTimeout("tcp", a, 700*time.Millisecond)
			if err != nil {
				dials[a] = err.Error()
				continue
			}
			dials[a] = "connected"
			c.Close()
		}
		out["dials"] = dials
		host, _ := os.Hostname()
		out["hostname"] = host
	default:
		return nil, errors.New("unknown action " + ev.Action)
	}
	out["sinceColdMs"] = time.Since(coldAt).Milliseconds()
	return out, nil
}

func main() { lambda.Start(handle) }
