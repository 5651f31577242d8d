package server

import "testing"

func TestMemoryBudgetFlag(t *testing.T) {
	for in, want := range map[string]MemoryBudget{
		"50%":    {Percent: 50},
		"12.5%":  {Percent: 12.5},
		"8GiB":   {MB: 8192},
		"512MiB": {MB: 512},
		"1.5G":   {MB: 1536},
		"1TiB":   {MB: 1 << 20},
		"off":    {Off: true},
		"0":      {Off: true},
	} {
		var b MemoryBudget
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("Set(%q) = %+v, %v; want %+v", in, b, err, want)
		}
	}
	for _, in := range []string{"", "0%", "150%", "12", "8 GiB", "8KiB", "-1GiB", "x%"} {
		var b MemoryBudget
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %+v, want an error", in, b)
		}
	}
	if b := (MemoryBudget{MB: 64}).orDefault(); b.MB != 64 {
		t.Errorf("a size was replaced by the default: %+v", b)
	}
	mb, err := MemoryBudget{}.orDefault().MegaBytes()
	total, terr := memTotalMB()
	if err != nil || terr != nil || mb != total/2 {
		t.Errorf("default budget = %d MB (%v), want half of MemTotal %d MB (%v)", mb, err, total, terr)
	}
	if mb, err := (MemoryBudget{Off: true}).MegaBytes(); mb != 0 || err != nil {
		t.Errorf("off = %d, %v", mb, err)
	}
}
