package datapath

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
	"golang.org/x/sys/unix"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestRestartInPlace: after a crash (the datapath stops without teardown,
// the store is reopened) every record is rebuilt in place: namespaces keep
// their identity, an established connection keeps flowing, stale objects
// with the prefix are removed, and IPAM hands out no duplicate address.
func TestRestartInPlace(t *testing.T) {
	f := newFixture(t)
	v := f.vpc(acctA, "10.0.0.0/16")
	s := f.subnet(acctA, v.ID, "10.0.1.0/24")
	sg := f.sg(acctA, v.ID, "app")
	f.allow(acctA, sg, false, perm("tcp", 7000, 7000, "10.0.0.0/16"))
	srv := f.iface(acctA, s.ID, "", sg)
	cli := f.iface(acctA, s.ID, "", sg)
	f.listen(srv, "srv", 7000)
	if got := eventually("srv sees "+cli.addr, func() string { return tcp(cli, srv.addr+":7000") }); got != "srv sees "+cli.addr {
		t.Fatalf("before restart: %q", got)
	}
	conn, err := netdev.DialIn(cli.ns, "tcp", srv.addr+":7000", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	srvIno, routerIno := inode(t, srv.ns), inode(t, f.rec.VPCs().RouterNetns(v.ID))

	// Stale objects with the prefix that no record owns.
	stale := []string{f.prefix + "-i0123456789abcdef0", f.prefix + "-v0123456789abcdef0"}
	for _, n := range stale {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
	}
	if out, err := exec.Command("ip", "-n", nsName(f.rec.VPCs().RouterNetns(v.ID)), "link", "add", "i0123456789abcd", "type", "veth", "peer", "name", "x0").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	// Crash: stop without teardown, reopen the store, start a new datapath.
	f.rec.Stop()
	f.st.Close()
	if f.st, err = store.Open(f.ctx, store.Options{DataDir: f.dir, Logger: discard}); err != nil {
		t.Fatal(err)
	}
	if f.m, err = vpc.Open(f.ctx, f.st, discard); err != nil {
		t.Fatal(err)
	}
	f.startReconciler()

	if got := inode(t, srv.ns); got != srvIno {
		t.Errorf("instance namespace was replaced (inode %d -> %d)", srvIno, got)
	}
	if got := inode(t, f.rec.VPCs().RouterNetns(v.ID)); got != routerIno {
		t.Errorf("router namespace was replaced")
	}
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "after restart\n")
	if line, err := rd.ReadString('\n'); err != nil || strings.TrimSpace(line) != "after restart" {
		t.Errorf("established connection after restart: %q, %v", line, err)
	}
	if got := eventually("srv sees "+cli.addr, func() string { return tcp(cli, srv.addr+":7000") }); got != "srv sees "+cli.addr {
		t.Errorf("new connection after restart: %q", got)
	}
	for _, n := range stale {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err == nil {
			t.Errorf("stale namespace %s not removed", n)
		}
	}
	if err := netdev.WaitGone(f.rec.VPCs().RouterNetns(v.ID), "i0123456789abcd"); err != nil {
		t.Errorf("stale link: %v", err)
	}
	// IPAM: new addresses never repeat live ones.
	seen := map[string]bool{srv.addr: true, cli.addr: true}
	for range 5 {
		n := f.iface(acctA, s.ID, "", sg)
		if seen[n.addr] {
			t.Fatalf("address %s handed out twice after restart", n.addr)
		}
		seen[n.addr] = true
	}
}

// TestNoLeaks: 500 interface create/delete cycles leave no namespace,
// link, nft element or address behind.
func TestNoLeaks(t *testing.T) {
	f := newFixture(t)
	v := f.vpc(acctA, "10.0.0.0/16")
	s := f.subnet(acctA, v.ID, "10.0.1.0/24")
	sg := f.sg(acctA, v.ID, "app")
	f.allow(acctA, sg, false, perm("tcp", 7000, 7000, sg))
	keep := f.iface(acctA, s.ID, "", sg)
	router := f.rec.VPCs().RouterNetns(v.ID)
	snap := func() string {
		ns, _, err := netdev.ListPrefixed(f.prefix)
		if err != nil {
			t.Fatal(err)
		}
		links, err := exec.Command("ip", "-n", nsName(router), "-o", "link").Output()
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := exec.Command("ip", "-n", nsName(router), "-o", "-4", "addr").Output()
		if err != nil {
			t.Fatal(err)
		}
		routes, _ := exec.Command("ip", "-n", nsName(router), "-4", "route", "show", "table", "all").Output()
		c, err := nft.Open(router)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		chains, sets, elems, err := c.TableObjects(f.prefix)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("netns=%d links=%d addrs=%d routes=%d chains=%d sets=%d elems=%d",
			len(ns), strings.Count(string(links), "\n"), strings.Count(string(addrs), "\n"),
			strings.Count(string(routes), "\n"), chains, sets, elems)
	}
	before := snap()
	deadline := time.Now().Add(3 * time.Minute)
	n := 0
	for ; n < 500 && time.Now().Before(deadline); n++ {
		in := f.iface(acctA, s.ID, "", sg)
		if err := f.m.DeleteInterface(f.ctx, acctA, in.id); err != nil {
			t.Fatal(err)
		}
		f.sync()
	}
	if n < 500 {
		t.Fatalf("only %d cycles within the time bound", n)
	}
	if after := snap(); after != before {
		t.Errorf("after %d cycles:\n before %s\n after  %s", n, before, after)
	}
	f.listen(keep, "keep", 7000)
	if got := eventually("keep sees "+keep.addr, func() string { return tcp(keep, keep.addr+":7000") }); got != "keep sees "+keep.addr {
		t.Errorf("the interface that stayed: %q", got)
	}
}
