package server

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DefaultEnvMemoryPercent is serve's --env-memory-budget: the share of the
// host's memory (MemTotal) the execution environments may hold.
const DefaultEnvMemoryPercent = 50

// MemoryBudget is how much memory the execution environments may hold:
// a share of the host's MemTotal (Percent) or a size (MB); Off: no bound.
// The zero value is DefaultEnvMemoryPercent (Config.Defaults).
type MemoryBudget struct {
	Percent float64
	MB      int64
	Off     bool
}

// String is the flag form: "50%", "8192MiB" or "off".
func (b *MemoryBudget) String() string {
	switch {
	case b == nil:
		return ""
	case b.Percent > 0:
		return strconv.FormatFloat(b.Percent, 'f', -1, 64) + "%"
	case b.MB > 0:
		return strconv.FormatInt(b.MB, 10) + "MiB"
	}
	return "off"
}

// Set parses "50%", a size with a unit (MiB, GiB, TiB; M, G, T and MB, GB,
// TB are read as the binary units too) or "off".
func (b *MemoryBudget) Set(v string) error {
	v = strings.TrimSpace(v)
	if v == "off" || v == "0" {
		*b = MemoryBudget{Off: true}
		return nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return fmt.Errorf("%q: a share of the host's memory is a percentage in (0, 100], e.g. 50%%", v)
		}
		*b = MemoryBudget{Percent: f}
		return nil
	}
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return fmt.Errorf("%q: give a size with a unit (e.g. 8GiB, 512MiB), a percentage of the host's memory (e.g. 50%%) or off", v)
	}
	n, err := strconv.ParseFloat(v[:i], 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q: not a positive size", v)
	}
	mult := map[string]float64{"M": 1, "MB": 1, "MiB": 1, "G": 1024, "GB": 1024, "GiB": 1024, "T": 1 << 20, "TB": 1 << 20, "TiB": 1 << 20}[v[i:]]
	if mult == 0 {
		return fmt.Errorf("%q: unknown unit %q (use MiB, GiB or TiB)", v, v[i:])
	}
	*b = MemoryBudget{MB: int64(n * mult)}
	return nil
}

// orDefault is b, or DefaultEnvMemoryPercent when b is the zero value.
func (b MemoryBudget) orDefault() MemoryBudget {
	if b == (MemoryBudget{}) {
		return MemoryBudget{Percent: DefaultEnvMemoryPercent}
	}
	return b
}

// MegaBytes resolves the budget on this host (0: none).
func (b MemoryBudget) MegaBytes() (int64, error) {
	if b.Off {
		return 0, nil
	}
	if b.Percent <= 0 {
		return b.MB, nil
	}
	total, err := memTotalMB()
	if err != nil {
		return 0, fmt.Errorf("--env-memory-budget %s: %w (give a size instead)", b.String(), err)
	}
	return int64(float64(total) * b.Percent / 100), nil
}

// memTotalMB is the host's MemTotal.
func memTotalMB() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemTotal in /proc/meminfo: %w", err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no MemTotal in /proc/meminfo")
}
