package vpc

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Permission is one IpPermission of an Authorize/Revoke request: a protocol
// and port range with any number of CIDR and group sources. Nil ports mean
// "not given".
type Permission struct {
	Protocol string
	FromPort *int32
	ToPort   *int32
	CIDRs    []CIDRSource
	Groups   []GroupSource
}

// CIDRSource is an IpRanges element.
type CIDRSource struct {
	CIDR        string
	Description string
}

// GroupSource is a UserIdGroupPairs element: a group by ID or (within the
// target group's VPC) by name.
type GroupSource struct {
	GroupID     string
	GroupName   string
	UserID      string
	Description string
}

// NormalizeProtocol maps tcp/6, udp/17, icmp/1, all/-1 and other protocol
// numbers (0–255) to the form rules are stored in.
func NormalizeProtocol(p string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(p)) {
	case "":
		return "", missing("IpPermissions.N.IpProtocol")
	case "-1", "all":
		return "-1", nil
	case "tcp", "6":
		return "tcp", nil
	case "udp", "17":
		return "udp", nil
	case "icmp", "1":
		return "icmp", nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 255 {
		return "", errf(CodeInvalidParameterValue, "Invalid value '%s' for IP protocol. Unknown protocol; use tcp, udp, icmp, -1 (all) or a number 0-255.", p)
	}
	return strconv.Itoa(n), nil
}

// ProtocolNumber is the IP protocol number of a stored protocol (-1 = all).
func ProtocolNumber(p string) int {
	switch p {
	case "tcp":
		return 6
	case "udp":
		return 17
	case "icmp":
		return 1
	case "-1":
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return n
}

// HasPorts reports whether a stored protocol carries a port (or ICMP
// type/code) range.
func HasPorts(proto string) bool { return proto == "tcp" || proto == "udp" || proto == "icmp" }

// normalizePorts validates and fills the port range of proto.
func normalizePorts(proto string, from, to *int32) (int32, int32, error) {
	switch proto {
	case "tcp", "udp":
		if from == nil && to == nil {
			return 0, 65535, nil
		}
		if from == nil || to == nil {
			return 0, 0, errf(CodeInvalidParameterValue, "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.")
		}
		f, t := *from, *to
		if f == -1 && t == -1 {
			return 0, 65535, nil
		}
		if f < 0 || f > 65535 || t < 0 || t > 65535 {
			return 0, 0, errf(CodeInvalidParameterValue, "Invalid value for portRange. Must specify ports between 0 and 65535 (got %d-%d).", f, t)
		}
		if f > t {
			return 0, 0, errf(CodeInvalidParameterValue, "Invalid TCP/UDP port range %d-%d: the from port must not exceed the to port.", f, t)
		}
		return f, t, nil
	case "icmp":
		f, t := int32(-1), int32(-1)
		if from != nil {
			f = *from
		}
		if to != nil {
			t = *to
		}
		if f < -1 || f > 255 || t < -1 || t > 255 {
			return 0, 0, errf(CodeInvalidParameterValue, "Invalid ICMP type/code %d/%d: both must be -1 (any) or 0-255.", f, t)
		}
		if f == -1 && t != -1 {
			return 0, 0, errf(CodeInvalidParameterValue, "Invalid ICMP code %d: if you specify all ICMP types (-1) you must specify all codes (-1).", t)
		}
		return f, t, nil
	}
	return -1, -1, nil
}

// ruleKey identifies a rule for duplicate detection (description ignored).
func (r Rule) key() string {
	return fmt.Sprintf("%s|%d|%d|%s|%s", r.Protocol, r.FromPort, r.ToPort, r.CIDR, r.GroupID)
}

// expand turns permissions into flat rules. resolve maps a group source to a
// group ID and owner in the target's VPC (or fails).
func expand(perms []Permission, resolve func(GroupSource) (id, owner string, err error)) ([]Rule, error) {
	if len(perms) == 0 {
		return nil, missing("IpPermissions")
	}
	var out []Rule
	for _, p := range perms {
		proto, err := NormalizeProtocol(p.Protocol)
		if err != nil {
			return nil, err
		}
		from, to, err := normalizePorts(proto, p.FromPort, p.ToPort)
		if err != nil {
			return nil, err
		}
		if len(p.CIDRs) == 0 && len(p.Groups) == 0 {
			return nil, errf(CodeMissingParameter, "Each permission needs a source or destination: IpRanges (CidrIp) or UserIdGroupPairs (GroupId).")
		}
		for _, c := range p.CIDRs {
			pfx, err := netip.ParsePrefix(c.CIDR)
			if err != nil || !pfx.Addr().Is4() {
				return nil, errf(CodeInvalidParameterValue, "CIDR block %s is malformed; use an IPv4 CIDR such as 10.0.0.0/24.", c.CIDR)
			}
			out = append(out, Rule{Protocol: proto, FromPort: from, ToPort: to, CIDR: pfx.Masked().String(), Description: c.Description})
		}
		for _, g := range p.Groups {
			id, owner, err := resolve(g)
			if err != nil {
				return nil, err
			}
			out = append(out, Rule{Protocol: proto, FromPort: from, ToPort: to, GroupID: id, UserID: owner, Description: g.Description})
		}
	}
	return out, nil
}

// addRules appends rules to list, failing with InvalidPermission.Duplicate
// if any already exists (or is repeated in the request). New rules get IDs.
func addRules(list []Rule, add []Rule) ([]Rule, []Rule, error) {
	seen := map[string]bool{}
	for _, r := range list {
		seen[r.key()] = true
	}
	out := append([]Rule(nil), list...)
	var added []Rule
	for _, r := range add {
		if seen[r.key()] {
			return nil, nil, errf(CodeInvalidPermDuplicate, "the specified rule \"%s\" already exists", describeRule(r))
		}
		seen[r.key()] = true
		r.ID = NewID(PrefixRule)
		out = append(out, r)
		added = append(added, r)
	}
	return out, added, nil
}

// removeRules removes rules from list, failing with
// InvalidPermission.NotFound if any is absent.
func removeRules(list []Rule, del []Rule) ([]Rule, []Rule, error) {
	drop := map[string]bool{}
	for _, r := range del {
		drop[r.key()] = true
	}
	var out, removed []Rule
	for _, r := range list {
		if drop[r.key()] {
			removed = append(removed, r)
			delete(drop, r.key())
			continue
		}
		out = append(out, r)
	}
	for _, r := range del {
		if drop[r.key()] {
			return nil, nil, errf(CodeInvalidPermNotFound, "The specified rule does not exist in this security group: %s", describeRule(r))
		}
	}
	return out, removed, nil
}

func describeRule(r Rule) string {
	src := r.CIDR
	if r.GroupID != "" {
		src = r.GroupID
	}
	proto := r.Protocol
	if proto == "-1" {
		proto = "all"
	}
	if HasPorts(r.Protocol) {
		return fmt.Sprintf("peer: %s, %s, from port: %d, to port: %d, ALLOW", src, strings.ToUpper(proto), r.FromPort, r.ToPort)
	}
	return fmt.Sprintf("peer: %s, %s, ALLOW", src, strings.ToUpper(proto))
}
