package e2e

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
)

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func nsName(path string) string { return filepath.Base(path) }

func runIP(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(out), err
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
