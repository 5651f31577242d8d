package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Host-wide claims. A server names every kernel object after its prefix and
// removes, at start and on Close, prefixed objects no record of its own
// owns; its environments' addresses come from its service CIDR. Two servers
// with one prefix, or with overlapping service CIDRs, would therefore break
// each other. Before it touches the kernel a server claims its prefix with
// an flock on LockDir/prefix-<prefix>.lock, which holds who it is (pid, data
// directory, listen address, service CIDR) and which it keeps open while it
// lives; the kernel drops the flock if the process dies, so a file nobody
// holds is stale. Claims are made under an flock on LockDir/servers.lock,
// so a server's view of the others (and the service CIDR it picks) cannot
// race with another server starting. Close removes the file; a killed
// server's stale file stays (for at most staleKeep) as a hint: a server
// restarted with its prefix and --service-cidr auto takes the same block
// again, and other auto servers leave that block alone while they can.

// LockDir holds the servers' claims (created 0755 if missing).
const LockDir = "/run/lambdaplane"

// AutoServiceCIDRBits is the size of the block Config.AutoServiceCIDR
// picks, and AutoServiceCIDRRange where it picks it from (CGNAT space,
// skipping serve's default 100.64.0.0/16).
const AutoServiceCIDRBits = 20

// staleKeep is how long a dead server's claim file is kept.
const staleKeep = 24 * time.Hour

var (
	AutoServiceCIDRRange = netip.MustParsePrefix("100.64.0.0/10")
	defaultServiceCIDR   = netip.MustParsePrefix("100.64.0.0/16")
	lockPrefixRE         = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
)

// Holder is what a running server's claim file says about it.
type Holder struct {
	PID         int    `json:"pid"`
	Prefix      string `json:"prefix"`
	DataDir     string `json:"data_dir"`
	Listen      string `json:"listen"`
	ServiceCIDR string `json:"service_cidr"`
	// HostUplink is the uplink link net when the uplink is the host's own
	// namespace (--uplink host), where two servers' links would clash.
	HostUplink string `json:"host_uplink,omitempty"`
	// HostNetns identifies the network namespace the server runs in
	// (its host; e.g. net:[4026531840]): uplinks clash only within one.
	HostNetns string `json:"host_netns,omitempty"`
}

func (h Holder) String() string {
	return fmt.Sprintf("pid %d, data dir %s, listening on %s, prefix %s, service CIDR %s", h.PID, h.DataDir, h.Listen, h.Prefix, h.ServiceCIDR)
}

// ConflictError means another running server holds what this one asked
// for; Flag is the flag to change.
type ConflictError struct {
	Flag   string // "--prefix", "--service-cidr" or "--data"
	Value  string // what this server asked for
	Holder Holder
}

func (e *ConflictError) Error() string {
	switch e.Flag {
	case "--prefix":
		return fmt.Sprintf("another lambdaplane server is running with --prefix %s (%s): it owns every kernel object named %s-*; stop it, or pass another --prefix", e.Value, e.Holder, e.Value)
	case "--service-cidr":
		return fmt.Sprintf("--service-cidr %s overlaps the service CIDR of another running lambdaplane server (%s): stop it, or pass another --service-cidr (auto picks a free one)", e.Value, e.Holder)
	case "--uplink-net":
		return fmt.Sprintf("--uplink-net %s overlaps the uplink net of another running lambdaplane server whose uplink is this host too (%s): stop it, or pass another --uplink-net (or --uplink netns:…)", e.Value, e.Holder)
	default:
		return fmt.Sprintf("another lambdaplane server is running with %s %s (%s): stop it, or pass another %s", e.Flag, e.Value, e.Holder, e.Flag)
	}
}

// hostClaim is a held claim; release gives it back.
type hostClaim struct {
	dir         string
	path        string
	f           *os.File
	holder      Holder
	serviceCIDR netip.Prefix // claimed
}

// claimHost claims h.Prefix and a service CIDR for this process: h's
// ServiceCIDR, or with auto the one an earlier server with this prefix
// had if it is free, else the first free AutoServiceCIDRBits block of
// AutoServiceCIDRRange outside the default one.
func claimHost(dir string, h Holder, auto bool) (_ *hostClaim, err error) {
	if !lockPrefixRE.MatchString(h.Prefix) {
		return nil, fmt.Errorf("--prefix %q: use [a-z0-9] starting with a letter", h.Prefix)
	}
	var want netip.Prefix
	if !auto {
		if want, err = netip.ParsePrefix(h.ServiceCIDR); err != nil || !want.Addr().Is4() {
			return nil, fmt.Errorf("--service-cidr %q: use an IPv4 prefix such as 100.64.0.0/16", h.ServiceCIDR)
		}
		want = want.Masked()
		h.ServiceCIDR = want.String()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	all, err := os.OpenFile(filepath.Join(dir, "servers.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("server lock: %w", err)
	}
	defer all.Close() // drops the directory-wide flock
	if err := flock(all, unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", all.Name(), err)
	}

	path := filepath.Join(dir, "prefix-"+h.Prefix+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("prefix lock: %w", err)
	}
	if err := lockPrefixFile(f, path); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &ConflictError{Flag: "--prefix", Value: h.Prefix, Holder: readHolder(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	prev, hadPrev := readHolderOK(path) // a dead server's with this prefix, if any
	defer func() {
		if err != nil {
			if !hadPrev {
				_ = os.Remove(path) // created here, for nothing
			}
			f.Close()
		}
	}()
	others, stale, err := otherHolders(dir, path)
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		if o.DataDir != "" && o.DataDir == h.DataDir {
			return nil, &ConflictError{Flag: "--data", Value: h.DataDir, Holder: o}
		}
	}
	if auto {
		if want, err = pickServiceCIDR(prev, others, stale); err != nil {
			return nil, err
		}
		h.ServiceCIDR = want.String()
	}
	for _, o := range others {
		if p, perr := netip.ParsePrefix(o.ServiceCIDR); perr == nil && p.Overlaps(want) {
			return nil, &ConflictError{Flag: "--service-cidr", Value: want.String(), Holder: o}
		}
	}
	if mine, perr := netip.ParsePrefix(h.HostUplink); perr == nil {
		for _, o := range others {
			if h.HostNetns != "" && o.HostNetns != "" && h.HostNetns != o.HostNetns {
				continue // hosts of a cluster tested on one machine
			}
			if p, perr := netip.ParsePrefix(o.HostUplink); perr == nil && p.Overlaps(mine) {
				return nil, &ConflictError{Flag: "--uplink-net", Value: h.HostUplink, Holder: o}
			}
		}
	}
	if err := writeHolder(f, h); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &hostClaim{dir: dir, path: path, f: f, holder: h, serviceCIDR: want}, nil
}

// deadHolderGrace is how long a claim whose recorded server is dead may
// still be held: a child the killed server had just forked holds the
// file's descriptor until its exec closes it.
const deadHolderGrace = 3 * time.Second

// lockPrefixFile takes the prefix claim's flock without waiting, except
// while the server the file names is dead (then the holder is one of its
// children on its way to exec, and the flock is released in a moment).
func lockPrefixFile(f *os.File, path string) error {
	deadline := time.Now().Add(deadHolderGrace)
	for {
		err := flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		h, ok := readHolderOK(path)
		if !ok || h.PID <= 0 || unix.Kill(h.PID, 0) != unix.ESRCH || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// otherHolders returns the claims of running servers other than own, and
// those of dead servers (stale files), removing stale files older than
// staleKeep (safe: every claim is made under the directory-wide lock the
// caller holds).
func otherHolders(dir, own string) (live, stale []Holder, err error) {
	paths, err := filepath.Glob(filepath.Join(dir, "prefix-*.lock"))
	if err != nil {
		return nil, nil, err
	}
	for _, p := range paths {
		if p == own {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("read server lock: %w", err)
		}
		err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
		st, serr := f.Stat()
		f.Close()
		switch {
		case err == nil:
			h, ok := readHolderOK(p)
			if !ok || serr != nil || time.Since(st.ModTime()) > staleKeep {
				_ = os.Remove(p)
			} else {
				stale = append(stale, h)
			}
		case errors.Is(err, unix.EWOULDBLOCK):
			live = append(live, readHolder(p))
		default:
			return nil, nil, fmt.Errorf("lock %s: %w", p, err)
		}
	}
	return live, stale, nil
}

// pickServiceCIDR chooses a service CIDR for --service-cidr auto: prev's
// (a dead server's with the same prefix) if no live server overlaps it;
// else the first AutoServiceCIDRBits block of AutoServiceCIDRRange outside
// the default service CIDR that neither a live nor a dead server had; else
// the first one no live server has.
func pickServiceCIDR(prev Holder, live, stale []Holder) (netip.Prefix, error) {
	free := func(p netip.Prefix, hs ...[]Holder) bool {
		for _, list := range hs {
			for _, h := range list {
				if q, err := netip.ParsePrefix(h.ServiceCIDR); err == nil && q.Overlaps(p) {
					return false
				}
			}
		}
		return true
	}
	if p, err := netip.ParsePrefix(prev.ServiceCIDR); err == nil && p.Addr().Is4() && free(p, live) {
		return p.Masked(), nil
	}
	step := uint32(1) << (32 - AutoServiceCIDRBits)
	base := AutoServiceCIDRRange.Masked().Addr().As4()
	first := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n := uint32(1) << (AutoServiceCIDRBits - AutoServiceCIDRRange.Bits())
	for _, avoid := range [][][]Holder{{live, stale}, {live}} {
		for i := range n {
			a := first + i*step
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), AutoServiceCIDRBits)
			if !p.Overlaps(defaultServiceCIDR) && free(p, avoid...) {
				return p, nil
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /%d in %v for --service-cidr auto: every block is used by another lambdaplane server", AutoServiceCIDRBits, AutoServiceCIDRRange)
}

// setListen records the address the server actually listens on.
func (c *hostClaim) setListen(addr string) error {
	all, err := os.OpenFile(filepath.Join(c.dir, "servers.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer all.Close()
	if err := flock(all, unix.LOCK_EX); err != nil {
		return err
	}
	c.holder.Listen = addr
	return writeHolder(c.f, c.holder)
}

// release gives the claim back: the file is removed under the
// directory-wide lock (no server is claiming it meanwhile), then closed.
func (c *hostClaim) release() error {
	if c == nil {
		return nil
	}
	if all, err := os.OpenFile(filepath.Join(c.dir, "servers.lock"), os.O_RDWR|os.O_CREATE, 0o644); err == nil {
		if flock(all, unix.LOCK_EX) == nil {
			_ = os.Remove(c.path)
		}
		defer all.Close()
	}
	return c.f.Close()
}

func writeHolder(f *os.File, h Holder) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(append(b, '\n'), 0)
	return err
}

// readHolder reads a claim file; what cannot be read is reported as such.
func readHolder(path string) Holder {
	h, ok := readHolderOK(path)
	if !ok {
		return Holder{DataDir: "?", Listen: "?", ServiceCIDR: "?", Prefix: strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "prefix-"), ".lock")}
	}
	return h
}

func readHolderOK(path string) (Holder, bool) {
	var h Holder
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &h) != nil {
		return Holder{}, false
	}
	return h, true
}

// flock retries on EINTR.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}
