package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

// TestSandboxIsolation checks what a function can see and reach.
func TestSandboxIsolation(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	e.createProbe("iso")
	e.createProbe("neighbour")
	nb, _ := e.invokeJSON("neighbour", map[string]any{"action": "listen"})
	ips := nb["ips"].([]any)
	if len(ips) != 1 {
		t.Fatalf("neighbour addresses %v", ips)
	}
	neighbour := fmt.Sprint(ips[0]) + ":8080"
	apiPort := e.srv.Endpoint[strings.LastIndex(e.srv.Endpoint, ":")+1:]

	blockedBefore, err := e.srv.Router().EgressBlockedPackets()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := e.invokeJSON("iso", map[string]any{
		"action": "probe",
		"paths":  []string{"/tmp/ok", "/var/task/x", "/etc/x", "/x", "/usr/x", "/opt/x"},
		"addrs":  []string{internetTCP, neighbour, "127.0.0.1:" + apiPort, "10.1.2.3:80", "169.254.169.254:80", "192.168.1.1:80"},
	})
	if pids := m["pids"].([]any); len(pids) > 3 {
		t.Errorf("function sees %d processes: %v (host pids leak into the sandbox)", len(pids), pids)
	}
	if m["uid"].(float64) == 0 || m["CapEff"] != "0000000000000000" || m["NoNewPrivs"] != "1" {
		t.Errorf("privileges: uid %v CapEff %v NoNewPrivs %v", m["uid"], m["CapEff"], m["NoNewPrivs"])
	}
	writes := m["writes"].(map[string]any)
	for p, res := range writes {
		if (p == "/tmp/ok") != (res == "ok") {
			t.Errorf("write %s: %v", p, res)
		}
	}
	dials := m["dials"].(map[string]any)
	if dials[internetTCP] != "connected" {
		t.Errorf("the internet is unreachable: %v", dials[internetTCP])
	}
	for _, a := range []string{neighbour, "127.0.0.1:" + apiPort, "10.1.2.3:80", "169.254.169.254:80", "192.168.1.1:80"} {
		if dials[a] == "connected" {
			t.Errorf("function reached %s", a)
		}
	}
	blockedAfter, err := e.srv.Router().EgressBlockedPackets()
	if err != nil {
		t.Fatal(err)
	}
	if blockedAfter <= blockedBefore {
		t.Errorf("private destinations were not dropped by the platform (egress_blocked %d -> %d)", blockedBefore, blockedAfter)
	}
	if _, err := os.Stat("/x"); err == nil {
		t.Errorf("the function wrote to the host root")
	}
}

// TestEgressAllowList: an operator allow-list opens a private range.
func TestEgressAllowList(t *testing.T) {
	t.Parallel()
	// 203.0.113.0/24 stands in for an allowed private range here: the
	// allow-list is checked before the block list, so allowing a blocked
	// range is what matters; a second test namespace address would do the
	// same. Use 10.77.0.1 on the internet namespace's dummy.
	requireRoot(t)
	addr := "10.77.0.1"
	if out, err := runIP("-n", nsName(internetNS), "addr", "add", addr+"/32", "dev", "lo"); err != nil {
		t.Fatalf("add %s: %v %s", addr, err, out)
	}
	t.Cleanup(func() { runIP("-n", nsName(internetNS), "addr", "del", addr+"/32", "dev", "lo") })
	ln, err := netdev.ListenIn(internetNS, "tcp", addr+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	e := startServer(t, func(c *serverConfig) { c.EgressAllow = []netipPrefix{mustPrefix("10.77.0.0/16")} })
	e.createProbe("allowed")
	m, _ := e.invokeJSON("allowed", map[string]any{"action": "probe", "addrs": []string{addr + ":80", "10.78.0.1:80"}})
	dials := m["dials"].(map[string]any)
	if dials[addr+":80"] != "connected" {
		t.Errorf("allow-listed %s unreachable: %v", addr, dials[addr+":80"])
	}
	if dials["10.78.0.1:80"] == "connected" {
		t.Errorf("10.78.0.1 is outside the allow-list but was reached")
	}
}
