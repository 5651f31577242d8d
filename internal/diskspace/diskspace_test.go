package diskspace

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	const total = 64 << 20
	for _, c := range []struct {
		in   string
		want uint64 // For(total)
	}{
		{"", total / 10},
		{"auto", total / 10},
		{"0", 0},
		{"1048576", 1 << 20},
		{"256MiB", 256 << 20},
		{"256M", 256 << 20},
		{"2G", 2 << 30},
		{"1.5KiB", 1536},
		{"5MB", 5e6},
		{"25%", total / 4},
		{"0%", 0},
	} {
		w, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if got := w.For(total); got != c.want {
			t.Errorf("Parse(%q).For(64 MiB) = %d, want %d", c.in, got, c.want)
		}
		if w2, err := Parse(w.String()); err != nil || w2.For(total) != c.want {
			t.Errorf("Parse(%q).String() = %q does not parse back (%v)", c.in, w.String(), err)
		}
	}
	for _, bad := range []string{"-1", "101%", "x", "5 parsecs", "MiB", "%"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	// The default is capped on large filesystems.
	if got := (Watermark{}).For(1 << 40); got != DefaultCap {
		t.Errorf("default on 1 TiB = %d, want %d", got, DefaultCap)
	}
}

func TestOf(t *testing.T) {
	u, err := Of(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if u.Total == 0 || u.Free > u.Total {
		t.Errorf("usage %+v", u)
	}
	if _, err := Of("/nonexistent/" + t.Name()); err == nil {
		t.Error("Of a missing path succeeded")
	}
}

func TestIsNoSpace(t *testing.T) {
	if !IsNoSpace(&os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}) {
		t.Error("ENOSPC not recognised")
	}
	if !IsNoSpace(fmt.Errorf("store: %s", "write /d/jetstream/1.blk: no space left on device")) {
		t.Error("a store's ENOSPC message not recognised")
	}
	if IsNoSpace(os.ErrNotExist) || IsNoSpace(nil) {
		t.Error("other errors taken for ENOSPC")
	}
}
