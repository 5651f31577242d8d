package datapath

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The connection-rate benchmark runs its load in separate processes: this
// test binary re-executed (in a namespace, through nsenter) with
// LP_CONNRATE set to "server ADDR" or "client ADDR".
const connRateEnv = "LP_CONNRATE"

func TestMain(m *testing.M) {
	if role := os.Getenv(connRateEnv); role != "" {
		os.Exit(connRateChild(strings.Fields(role)))
	}
	os.Exit(m.Run())
}

// connRateChild is the child's body. server: accept and close until
// killed, after printing "ready". client: 4 workers dial and reset
// connections until 15,000 or 3 s, then print "<count> <nanoseconds>".
func connRateChild(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: server|client ADDR")
		return 2
	}
	if args[0] == "server" {
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			c.Close()
		}
	}
	n, d, err := connectLoop("", args[1], 4, 15000, 3*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(n, d.Nanoseconds())
	return 0
}

func connRateCmd(nsPath, role, addr string) *exec.Cmd {
	cmd := exec.Command("nsenter", "--net="+nsPath, os.Args[0])
	cmd.Env = append(os.Environ(), connRateEnv+"="+role+" "+addr)
	cmd.Stderr = os.Stderr
	return cmd
}

// startConnServer runs the server child in nsPath and waits until it
// listens; the returned function stops it.
func startConnServer(b *testing.B, nsPath, addr string) func() {
	b.Helper()
	cmd := connRateCmd(nsPath, "server", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		stop()
		b.Fatalf("connection server in %s: %q %v", nsPath, line, err)
	}
	return stop
}

// connectFrom runs one client child in nsPath against addr.
func connectFrom(b *testing.B, nsPath, addr string) (int64, time.Duration) {
	b.Helper()
	out, err := connRateCmd(nsPath, "client", addr).Output()
	if err != nil {
		b.Fatalf("connection client in %s: %v", nsPath, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		b.Fatalf("connection client printed %q", out)
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	ns, _ := strconv.ParseInt(f[1], 10, 64)
	if n == 0 || ns <= 0 {
		b.Fatalf("connection client printed %q", out)
	}
	return n, time.Duration(ns)
}
