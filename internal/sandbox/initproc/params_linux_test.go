package initproc

import (
	"reflect"
	"testing"
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
		TmpMB: 512, UID: 993, GID: 993, Argv: []string{"/var/task/bootstrap"}, Env: []string{"A=b c", "B=x:y:12:"},
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
	st, err := ParseStatus([]byte("ready\nok 1 2 3 4 5\n"))
	if err != nil || !st.OK || st.Times != [5]int64{1, 2, 3, 4, 5} {
		t.Errorf("ok: %+v %v", st, err)
	}
	st, err = ParseStatus([]byte("ok 1 2 3 4 5\nerr 127 exec /x: no such file or directory\n"))
	if err != nil || st.OK || st.Code != 127 || st.Msg != "exec /x: no such file or directory" {
		t.Errorf("err after ok: %+v %v", st, err)
	}
	for _, bad := range []string{"", "ready\n", "ok 1 2", "hello", "err x y"} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) succeeded", bad)
		}
	}
}

func TestLookPath(t *testing.T) {
	if p, err := lookPath("sh", []string{"PATH=/nonexistent:/bin"}); err != nil || p != "/bin/sh" {
		t.Errorf("sh: %q %v", p, err)
	}
	if _, err := lookPath("definitely-not-a-command", nil); err == nil {
		t.Error("missing command found")
	}
	if _, err := lookPath("/etc/passwd", nil); err == nil {
		t.Error("non-executable accepted")
	}
	if _, err := lookPath("/", nil); err == nil {
		t.Error("directory accepted")
	}
}
