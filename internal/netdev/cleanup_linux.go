package netdev

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Cleanup removes every kernel object with the prefix: all <prefix>-*
// network namespaces (the service router's links are deleted first so veth
// peers elsewhere go away at once), the host link <prefix>-up and the host
// nft table ip <prefix>-host. Already gone is success. It does not need a
// Router, so an operator can run it after a crash.
func Cleanup(prefix string) error { return cleanup(prefix, nil) }

// cleanup is Cleanup leaving the namespaces in keep in place.
func cleanup(prefix string, keep map[string]bool) error {
	if !prefixRE.MatchString(prefix) {
		return invalid("prefix %q", prefix)
	}
	var errs []error
	names, err := prefixedNetns(prefix)
	if err != nil {
		errs = append(errs, err)
	}
	svcPath := filepath.Join(netnsRunDir, svcName(prefix))
	if isNetnsMount(svcPath) {
		errs = append(errs, deleteAllLinks(svcPath))
	}
	for _, n := range names {
		if !keep[n] {
			errs = append(errs, deleteNamedNetns(n))
		}
	}
	errs = append(errs, withRootHandle(func(h *netlink.Handle) error {
		return delLink(h, hostLinkName(prefix))
	}))
	if c, err := nft.Open(hostNetnsPath()); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, c.DeleteTable(hostTableName(prefix)))
		c.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netdev: cleanup %s: %w", prefix, err)
	}
	return nil
}

func deleteAllLinks(nsPath string) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil // gone meanwhile
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range links {
		if l.Attrs().Name == "lo" {
			continue
		}
		if err := h.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s in %s: %w", l.Attrs().Name, nsPath, err))
		}
	}
	return errors.Join(errs...)
}

func withRootHandle(fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(hostNetnsPath())
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

func prefixedNetns(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsRunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// ListPrefixed lists kernel objects named with the prefix: network
// namespaces under /run/netns and links in the host's root namespace.
func ListPrefixed(prefix string) (netnsNames []string, links []string, err error) {
	netnsNames, err = prefixedNetns(prefix)
	if err != nil {
		return nil, nil, err
	}
	err = withRootHandle(func(h *netlink.Handle) error {
		ls, err := h.LinkList()
		if err != nil {
			return err
		}
		for _, l := range ls {
			if strings.HasPrefix(l.Attrs().Name, prefix+"-") {
				links = append(links, l.Attrs().Name)
			}
		}
		return nil
	})
	return netnsNames, links, err
}

// Leftovers describes every kernel object with the prefix that Cleanup
// would remove, plus namespace bind mounts without a file: "netns lp-e3",
// "link lp-up", "nft ip lp-host", and "mount /run/netns/lp-e3" for a bind
// mount whose file is gone. Empty means no leaks.
func Leftovers(prefix string) ([]string, error) {
	ns, links, err := ListPrefixed(prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range ns {
		out = append(out, "netns "+n)
	}
	for _, l := range links {
		out = append(out, "link "+l)
	}
	c, err := nft.Open(hostNetnsPath())
	if err != nil {
		return out, err
	}
	defer c.Close()
	if ok, err := c.HasTable(hostTableName(prefix)); err != nil {
		return out, err
	} else if ok {
		out = append(out, "nft ip "+hostTableName(prefix))
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], filepath.Join(netnsRunDir, prefix+"-")) {
			if _, err := os.Stat(fields[4]); errors.Is(err, os.ErrNotExist) {
				out = append(out, "mount "+fields[4])
			}
		}
	}
	return out, sc.Err()
}
