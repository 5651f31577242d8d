package sandbox

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/sandbox/initproc"
)

func TestCPUShares(t *testing.T) {
	for mb, want := range map[int]int{1: 2, 3: 2, 128: 74, 1769: 1024, 3538: 2048, 10240: 5927} {
		if got := cpuShares(mb); got != want {
			t.Errorf("cpuShares(%d) = %d, want %d", mb, got, want)
		}
	}
}

func TestVCPUs(t *testing.T) {
	n := runtime.NumCPU()
	for mb, want := range map[int]int{128: 1, 1769: 1, 1770: min(2, n), 3538: min(2, n), 10240: min(6, n)} {
		if got := VCPUs(mb); got != want {
			t.Errorf("VCPUs(%d) = %d, want %d (host CPUs %d)", mb, got, want, n)
		}
	}
}

func TestLimits(t *testing.T) {
	w := limits(128, true)
	var names []string
	for _, x := range w {
		names = append(names, x.file+"="+x.value)
	}
	got := strings.Join(names, " ")
	want := "memory.limit_in_bytes=134217728 memory.memsw.limit_in_bytes=134217728 memory.swappiness=0 pids.max=1024 cpu.shares=74"
	if got != want {
		t.Errorf("limits:\n got %s\nwant %s", got, want)
	}
	if len(limits(128, false)) != len(w)-1 {
		t.Error("memsw written without swap accounting")
	}
}

func TestOOMKills(t *testing.T) {
	n, ok := oomKills([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"))
	if !ok || n != 2 {
		t.Errorf("got %d %v", n, ok)
	}
	if _, ok := oomKills([]byte("oom_kill_disable 0\nunder_oom 0\n")); ok {
		t.Error("old kernel format reported a counter")
	}
}

func TestSpecValidate(t *testing.T) {
	good := Spec{ID: "abc123", NetnsPath: "/run/netns/x", CodeDir: "/code", Command: []string{"/var/task/bootstrap"}}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Spec){
		"id":      func(s *Spec) { s.ID = "ABC" },
		"longid":  func(s *Spec) { s.ID = strings.Repeat("a", 41) },
		"netns":   func(s *Spec) { s.NetnsPath = "" },
		"code":    func(s *Spec) { s.CodeDir = "code" },
		"opt":     func(s *Spec) { s.OptDir = "rel" },
		"command": func(s *Spec) { s.Command = nil },
		"memory":  func(s *Spec) { s.MemoryMB = -1 },
	} {
		s := good
		mut(&s)
		if err := s.validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestInitErrorIs(t *testing.T) {
	if !errors.Is(&InitError{Code: initproc.ExitExec}, ErrInvalidEntrypoint) {
		t.Error("exec failure is not ErrInvalidEntrypoint")
	}
	if errors.Is(&InitError{Code: initproc.ExitSetup}, ErrInvalidEntrypoint) {
		t.Error("setup failure is ErrInvalidEntrypoint")
	}
}

// Host id blocks are claimed host-wide: a second claim of a held block
// fails and names the holder, an automatic claim takes the next block,
// ids are handed out unused first and then longest-freed first, and the
// lock file is gone once the block is given back.
func TestHostIDBlocks(t *testing.T) {
	requireRoot(t)
	base := DefaultHostIDBase + (hostIDMaxBlocks-1)*HostIDBlock // the last block, unlikely in use
	a, err := claimHostIDs(base, "ta")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := claimHostIDs(base, "tb"); err == nil || !strings.Contains(err.Error(), "prefix ta") || !strings.Contains(err.Error(), "--sandbox-uid-base") {
		t.Errorf("second claim of a held block: %v", err)
	}
	if _, err := claimHostIDs(base+1, "tb"); err == nil {
		t.Error("unaligned base accepted")
	}
	auto, err := claimHostIDs(0, "tc")
	if err != nil {
		t.Fatal(err)
	}
	if auto.base == base {
		t.Errorf("automatic claim took the held block %d", base)
	}
	auto.Close()
	x, _ := a.alloc()
	y, _ := a.alloc()
	if x != base || y != base+1 {
		t.Errorf("first ids %d %d, want %d %d", x, y, base, base+1)
	}
	a.release(x)
	a.next = HostIDBlock // every id handed out once
	if z, err := a.alloc(); err != nil || z != x {
		t.Errorf("after the block: %d %v, want the freed %d", z, err, x)
	}
	if _, err := a.alloc(); !errors.Is(err, ErrNoHostIDs) {
		t.Errorf("exhausted block: %v", err)
	}
	path := a.lock.Name()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("lock file %s left behind: %v", path, err)
	}
	again, err := claimHostIDs(base, "td")
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	again.Close()
}
