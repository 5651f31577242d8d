package initproc

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParamsRoundTrip(t *testing.T) {
	b := &Base{Root: "/run/x", System: []Entry{{Path: "/usr"}, {Path: "/bin", Link: "usr/bin"}}, Devices: []string{"null"}}
	c, err := DecodeBase(b.Encode())
	if err != nil || !reflect.DeepEqual(b, c) {
		t.Errorf("base round trip: %+v != %+v (%v)", b, c, err)
	}
	if _, err := DecodeBase(b.Encode()[1:]); err == nil {
		t.Error("corrupt base decoded")
	}
	p := &Params{
		Fds:         []string{FdNetns, FdCgroup, FdCode},
		CgroupProcs: []string{"/sys/fs/cgroup/memory/lp/a/cgroup.procs"}, CodeDir: "/code",
		TmpMB: 512, UID: 993, GID: 993, HostUID: 1 << 30, HostGID: 1 << 30, Argv: []string{"/var/task/bootstrap"}, Env: []string{"A=b c", "B=x:y:12:"},
	}
	q, err := Decode(p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Errorf("round trip: %+v != %+v", p, q)
	}
	enc := p.Encode()
	for _, bad := range []string{"", "{", "4:lpi1", enc[:len(enc)-1], enc + "1:x", "4:lpi1" + enc[6:]} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	st, err := ParseStatus("ok 1 2 3 4 5\n")
	if err != nil || !st.OK || st.Times != [5]int64{1, 2, 3, 4, 5} {
		t.Errorf("ok: %+v %v", st, err)
	}
	st, err = ParseStatus("err 127 exec /x: no such file or directory\n")
	if err != nil || st.OK || st.Code != 127 || st.Msg != "exec /x: no such file or directory" {
		t.Errorf("err: %+v %v", st, err)
	}
	for _, bad := range []string{"", "ready\n", "ok 1 2", "hello", "err x y", "ok 1 2 3 4 5 6"} {
		if _, err := ParseStatus(bad); err == nil {
			t.Errorf("ParseStatus(%q) succeeded", bad)
		}
	}
}

func TestExitLine(t *testing.T) {
	for _, ws := range []unix.WaitStatus{0, 1 << 8, 137 << 8, unix.WaitStatus(unix.SIGKILL), unix.WaitStatus(unix.SIGSEGV) | 0x80} {
		got, ok := ParseExit(ExitLine(ws))
		if !ok || got != ws {
			t.Errorf("ParseExit(ExitLine(%#x)) = %#x, %v", uint32(ws), uint32(got), ok)
		}
	}
	for _, bad := range []string{"", "exit", "exit x", "ok 1 2 3 4 5", "exit -1"} {
		if _, ok := ParseExit(bad); ok {
			t.Errorf("ParseExit(%q) succeeded", bad)
		}
	}
}

func TestLookPath(t *testing.T) {
	if p, err := lookPath("", "sh", []string{"PATH=/nonexistent:/bin"}); err != nil || p != "/bin/sh" {
		t.Errorf("sh: %q %v", p, err)
	}
	if _, err := lookPath("", "definitely-not-a-command", nil); err == nil {
		t.Error("missing command found")
	}
	if _, err := lookPath("", "/etc/passwd", nil); err == nil {
		t.Error("non-executable accepted")
	}
	if _, err := lookPath("", "/", nil); err == nil {
		t.Error("directory accepted")
	}
}
