// Package diskspace measures the free space of the filesystem holding the
// data directory and holds the watermark below which lambdaplane refuses
// new code (serve --min-free-disk).
//
// The watermark keeps room for what the server must still write when the
// disk is nearly full — function records, queued events, logs, the store's
// own bookkeeping — so that the embedded store never meets ENOSPC because
// of an upload. An upload is admitted only if the free space minus what it
// needs (the zip kept in the store plus the unpacked tree) stays at or
// above the watermark.
package diskspace

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Default watermark: DefaultPercent of the filesystem's size, at most
// DefaultCap. A 64 MB tmpfs keeps 6.4 MB free, a 1 TB disk 512 MiB.
const (
	DefaultPercent = 10
	DefaultCap     = 512 << 20
)

// Usage is the space of one filesystem, in bytes. Free is what an
// unprivileged writer may still use (statfs f_bavail).
type Usage struct {
	Free, Total uint64
}

// Of returns the usage of the filesystem holding path.
func Of(path string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return Usage{Free: st.Bavail * bs, Total: st.Blocks * bs}, nil
}

// Watermark is the free space to keep: a fixed number of bytes, a share of
// the filesystem, or (the zero value) the default.
type Watermark struct {
	Bytes   uint64  // when Percent == 0
	Percent float64 // share of the filesystem's size, 0 < Percent <= 100
	Set     bool    // false: the default, min(DefaultPercent %, DefaultCap)
}

// Parse reads a watermark: "" or "auto" (the default), a number of bytes
// with an optional unit (K, M, G, T or KiB, MiB, GiB, TiB: powers of 1024;
// KB, MB, GB, TB: powers of 1000), or a percentage of the filesystem ("5%").
// "0" keeps nothing free (no watermark).
func Parse(s string) (Watermark, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "auto") {
		return Watermark{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v > 100 || math.IsNaN(v) {
			return Watermark{}, fmt.Errorf("free-disk watermark %q: a percentage must be between 0%% and 100%%", s)
		}
		return Watermark{Percent: v, Set: true}, nil
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return Watermark{}, fmt.Errorf("free-disk watermark %q: want bytes (e.g. 256MiB, 1G, 1073741824), a percentage (5%%) or auto", s)
	}
	mult, ok := units[strings.ToUpper(unit)]
	if !ok {
		return Watermark{}, fmt.Errorf("free-disk watermark %q: unknown unit %q (use K, M, G, T, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s, unit)
	}
	return Watermark{Bytes: uint64(v * float64(mult)), Set: true}, nil
}

var units = map[string]uint64{
	"": 1, "B": 1,
	"K": 1 << 10, "KI": 1 << 10, "KIB": 1 << 10, "KB": 1e3,
	"M": 1 << 20, "MI": 1 << 20, "MIB": 1 << 20, "MB": 1e6,
	"G": 1 << 30, "GI": 1 << 30, "GIB": 1 << 30, "GB": 1e9,
	"T": 1 << 40, "TI": 1 << 40, "TIB": 1 << 40, "TB": 1e12,
}

// For returns the bytes to keep free on a filesystem of total bytes.
func (w Watermark) For(total uint64) uint64 {
	switch {
	case !w.Set:
		return min(uint64(float64(total)*DefaultPercent/100), DefaultCap)
	case w.Percent > 0:
		return uint64(float64(total) * w.Percent / 100)
	default:
		return w.Bytes
	}
}

// String is the watermark as Parse reads it.
func (w Watermark) String() string {
	switch {
	case !w.Set:
		return "auto"
	case w.Percent > 0:
		return strconv.FormatFloat(w.Percent, 'f', -1, 64) + "%"
	default:
		return strconv.FormatUint(w.Bytes, 10)
	}
}

// IsNoSpace reports whether err says a filesystem is full: ENOSPC, or a
// message carrying it (the embedded store reports its write errors as
// text).
func IsNoSpace(err error) bool {
	return err != nil && (errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device"))
}

// Human formats bytes for messages: "6.4 MiB (6710886 bytes)".
func Human(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB (%d bytes)", float64(b)/(1<<30), b)
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB (%d bytes)", float64(b)/(1<<20), b)
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB (%d bytes)", float64(b)/(1<<10), b)
	}
	return fmt.Sprintf("%d bytes", b)
}
