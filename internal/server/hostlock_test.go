package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mustClaim(t *testing.T, dir string, h Holder, auto bool) *hostClaim {
	t.Helper()
	c, err := claimHost(dir, h, auto)
	if err != nil {
		t.Fatalf("claim %+v: %v", h, err)
	}
	t.Cleanup(func() { c.release() })
	return c
}

func wantConflict(t *testing.T, err error, flag, holderData string) {
	t.Helper()
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Flag != flag {
		t.Fatalf("err = %v, want a %s conflict", err, flag)
	}
	msg := err.Error()
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "data dir " + holderData, "pass another " + flag} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
}

func TestClaimHost(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "lambdaplane") // created by the claim
	pid := os.Getpid()
	a := mustClaim(t, dir, Holder{PID: pid, Prefix: "a", DataDir: "/d/a", Listen: "127.0.0.1:0", ServiceCIDR: "100.64.0.0/16"}, false)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("lock dir: %v %v", st, err)
	}
	if err := a.setListen("127.0.0.1:9009"); err != nil {
		t.Fatal(err)
	}
	var onDisk Holder
	if b, err := os.ReadFile(filepath.Join(dir, "prefix-a.lock")); err != nil || json.Unmarshal(b, &onDisk) != nil {
		t.Fatalf("claim file: %q %v", b, err)
	}
	if onDisk != (Holder{PID: pid, Prefix: "a", DataDir: "/d/a", Listen: "127.0.0.1:9009", ServiceCIDR: "100.64.0.0/16"}) {
		t.Fatalf("claim file says %+v", onDisk)
	}

	// The same prefix, another data dir and service CIDR.
	_, err := claimHost(dir, Holder{PID: pid, Prefix: "a", DataDir: "/d/b", ServiceCIDR: "10.1.0.0/16"}, false)
	wantConflict(t, err, "--prefix", "/d/a")
	// Another prefix, an overlapping service CIDR.
	_, err = claimHost(dir, Holder{PID: pid, Prefix: "b", DataDir: "/d/b", ServiceCIDR: "100.64.128.0/17"}, false)
	wantConflict(t, err, "--service-cidr", "/d/a")
	_, err = claimHost(dir, Holder{PID: pid, Prefix: "b", DataDir: "/d/b", ServiceCIDR: "100.0.0.0/8"}, false)
	wantConflict(t, err, "--service-cidr", "/d/a")
	// Another prefix and service CIDR, the same data directory.
	_, err = claimHost(dir, Holder{PID: pid, Prefix: "b", DataDir: "/d/a", ServiceCIDR: "10.1.0.0/16"}, false)
	wantConflict(t, err, "--data", "/d/a")
	// The refused claims hold nothing and leave no file.
	if _, err := os.Stat(filepath.Join(dir, "prefix-b.lock")); !os.IsNotExist(err) {
		t.Fatalf("a refused claim left its file: %v", err)
	}
	mustClaim(t, dir, Holder{PID: pid, Prefix: "b", DataDir: "/d/b", ServiceCIDR: "10.1.0.0/16"}, false)

	// auto picks blocks outside the default /16 and the others' CIDRs.
	e := mustClaim(t, dir, Holder{PID: pid, Prefix: "e", DataDir: "/d/e"}, true)
	f := mustClaim(t, dir, Holder{PID: pid, Prefix: "f", DataDir: "/d/f"}, true)
	if e.serviceCIDR.String() != "100.65.0.0/20" || f.serviceCIDR.String() != "100.65.16.0/20" {
		t.Fatalf("auto service CIDRs %v and %v", e.serviceCIDR, f.serviceCIDR)
	}
	_, err = claimHost(dir, Holder{PID: pid, Prefix: "g", DataDir: "/d/g", ServiceCIDR: "100.65.0.0/16"}, false)
	wantConflict(t, err, "--service-cidr", "/d/e")

	// Released claims are free again, and their files are gone.
	if err := a.release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "prefix-a.lock")); !os.IsNotExist(err) {
		t.Fatalf("released claim file: %v", err)
	}
	mustClaim(t, dir, Holder{PID: pid, Prefix: "a", DataDir: "/d/a2", ServiceCIDR: "100.64.0.0/16"}, false)
}

// A claim file nobody holds an flock on is a dead server's: it does not
// block anyone, a restart with its prefix and auto gets its service CIDR
// back, and other auto servers avoid that CIDR; it is removed once old.
func TestClaimHostStaleFiles(t *testing.T) {
	dir := t.TempDir()
	pid := os.Getpid()
	stale, _ := json.Marshal(Holder{PID: 999999, Prefix: "z", DataDir: "/d/z", ServiceCIDR: "100.64.0.0/16"})
	if err := os.WriteFile(filepath.Join(dir, "prefix-z.lock"), stale, 0o644); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, dir, Holder{PID: pid, Prefix: "a", DataDir: "/d/z", ServiceCIDR: "100.64.0.0/16"}, false)
	mustClaim(t, dir, Holder{PID: pid, Prefix: "z", DataDir: "/d/z2", ServiceCIDR: "10.0.0.0/8"}, false)

	// A server killed without Close (its descriptor closed, the file left).
	k := mustClaim(t, dir, Holder{PID: pid, Prefix: "k", DataDir: "/d/k"}, true)
	if k.serviceCIDR.String() != "100.65.0.0/20" {
		t.Fatalf("auto service CIDR %v", k.serviceCIDR)
	}
	k.f.Close()
	m := mustClaim(t, dir, Holder{PID: pid, Prefix: "m", DataDir: "/d/m"}, true)
	if m.serviceCIDR.String() != "100.65.16.0/20" {
		t.Fatalf("another auto server took %v, want the block after the dead server's", m.serviceCIDR)
	}
	k2 := mustClaim(t, dir, Holder{PID: pid, Prefix: "k", DataDir: "/d/k"}, true)
	if k2.serviceCIDR != k.serviceCIDR {
		t.Fatalf("restarted with %v, want %v again", k2.serviceCIDR, k.serviceCIDR)
	}

	old := filepath.Join(dir, "prefix-o.lock")
	if err := os.WriteFile(old, stale, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(old, time.Now().Add(-2*staleKeep), time.Now().Add(-2*staleKeep)); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, dir, Holder{PID: pid, Prefix: "n", DataDir: "/d/n", ServiceCIDR: "172.16.0.0/16"}, false)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("old stale claim file: %v", err)
	}
}

func TestClaimHostRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, h := range []Holder{
		{Prefix: "../x", ServiceCIDR: "100.64.0.0/16"},
		{Prefix: "", ServiceCIDR: "100.64.0.0/16"},
		{Prefix: "a", ServiceCIDR: "fd00::/64"},
	} {
		if c, err := claimHost(dir, h, false); err == nil {
			c.release()
			t.Errorf("claimed %+v", h)
		}
	}
}

// Two servers whose uplinks are both the host's namespace must not share
// the uplink link net; uplinks in namespaces of their own may.
func TestHostUplinkNetClaimed(t *testing.T) {
	dir := t.TempDir()
	pid := os.Getpid()
	if _, err := claimHost(dir, Holder{PID: pid, Prefix: "u1", DataDir: "/d/u1", ServiceCIDR: "10.1.0.0/16", HostUplink: "169.254.255.0/30"}, false); err != nil {
		t.Fatal(err)
	}
	_, err := claimHost(dir, Holder{PID: pid, Prefix: "u2", DataDir: "/d/u2", ServiceCIDR: "10.2.0.0/16", HostUplink: "169.254.255.0/30"}, false)
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Flag != "--uplink-net" || !strings.Contains(err.Error(), "--uplink-net") {
		t.Errorf("second host uplink on the same net: %v", err)
	}
	if _, err := claimHost(dir, Holder{PID: pid, Prefix: "u3", DataDir: "/d/u3", ServiceCIDR: "10.3.0.0/16", HostUplink: "169.254.254.0/30"}, false); err != nil {
		t.Errorf("another uplink net: %v", err)
	}
	if _, err := claimHost(dir, Holder{PID: pid, Prefix: "u4", DataDir: "/d/u4", ServiceCIDR: "10.4.0.0/16"}, false); err != nil {
		t.Errorf("uplink in a namespace: %v", err)
	}
}

// A claim file still locked by a child of a killed server (it names a dead
// pid) is waited for; one whose server lives is refused at once.
func TestClaimHostWaitsForDeadServersChild(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prefix-lpw.lock")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	for _, tc := range []struct {
		pid      int
		wantWait bool
	}{{dead, true}, {os.Getpid(), false}} {
		b, _ := json.Marshal(Holder{PID: tc.pid, Prefix: "lpw", DataDir: "/old"})
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		child, err := os.Open(path) // the child's inherited descriptor
		if err != nil {
			t.Fatal(err)
		}
		if err := flock(child, unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		go func() { time.Sleep(300 * time.Millisecond); child.Close() }()
		start := time.Now()
		c, err := claimHost(dir, Holder{PID: os.Getpid(), Prefix: "lpw", DataDir: t.TempDir(), ServiceCIDR: "100.99.0.0/16"}, false)
		took := time.Since(start)
		if tc.wantWait {
			if err != nil {
				t.Fatalf("holder pid %d dead: claim refused after %v: %v", tc.pid, took, err)
			}
			if took < 250*time.Millisecond {
				t.Fatalf("claim took %v: it cannot have waited for the child", took)
			}
			c.release()
			continue
		}
		var ce *ConflictError
		if !errors.As(err, &ce) || took > 200*time.Millisecond {
			t.Fatalf("holder pid %d alive: got %v after %v, want a conflict at once", tc.pid, err, took)
		}
		time.Sleep(350 * time.Millisecond)
	}
}
