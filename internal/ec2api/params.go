package ec2api

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// params is a decoded EC2 Query request (form body plus query string).
type params url.Values

func (p params) str(k string) string { return url.Values(p).Get(k) }

func (p params) has(k string) bool { _, ok := p[k]; return ok }

// indices returns the sorted distinct N of keys "prefix.N" / "prefix.N.*".
func (p params) indices(prefix string) []int {
	seen := map[int]bool{}
	var out []int
	for k := range p {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ".")
		i, err := strconv.Atoi(n)
		if err != nil || seen[i] {
			continue
		}
		seen[i] = true
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// list returns the values of "prefix.1", "prefix.2", ... in index order.
func (p params) list(prefix string) []string {
	var out []string
	for _, i := range p.indices(prefix) {
		if v := p.str(prefix + "." + strconv.Itoa(i)); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (p params) int32p(k string) (*int32, error) {
	s := p.str(k)
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "Value (" + s + ") for parameter " + k + " is invalid: not an integer."}
	}
	v := int32(n)
	return &v, nil
}

type filter struct {
	Name   string
	Values []string
}

// filters decodes Filter.N.Name / Filter.N.Value.M.
func (p params) filters() []filter {
	var out []filter
	for _, i := range p.indices("Filter") {
		pre := "Filter." + strconv.Itoa(i)
		out = append(out, filter{Name: p.str(pre + ".Name"), Values: p.list(pre + ".Value")})
	}
	return out
}

// tags decodes prefix.N.Key / prefix.N.Value.
func (p params) tags(prefix string) []vpc.Tag {
	var out []vpc.Tag
	for _, i := range p.indices(prefix) {
		pre := prefix + "." + strconv.Itoa(i)
		out = append(out, vpc.Tag{Key: p.str(pre + ".Key"), Value: p.str(pre + ".Value")})
	}
	return out
}

// tagSpecs returns the tags of TagSpecification.N entries for resourceType.
func (p params) tagSpecs(resourceType string) ([]vpc.Tag, error) {
	var out []vpc.Tag
	for _, i := range p.indices("TagSpecification") {
		pre := "TagSpecification." + strconv.Itoa(i)
		rt := p.str(pre + ".ResourceType")
		if rt != "" && rt != resourceType {
			return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "'" + rt + "' is not a valid taggable resource type for this operation; use '" + resourceType + "'."}
		}
		out = append(out, p.tags(pre+".Tag")...)
	}
	return out, nil
}

// permissions decodes IpPermissions.N.* and the top-level shorthand
// (IpProtocol, FromPort, ToPort, CidrIp, SourceSecurityGroupName,
// SourceSecurityGroupOwnerId).
func (p params) permissions() ([]vpc.Permission, error) {
	var out []vpc.Permission
	for _, i := range p.indices("IpPermissions") {
		pre := "IpPermissions." + strconv.Itoa(i)
		var perm vpc.Permission
		perm.Protocol = p.str(pre + ".IpProtocol")
		var err error
		if perm.FromPort, err = p.int32p(pre + ".FromPort"); err != nil {
			return nil, err
		}
		if perm.ToPort, err = p.int32p(pre + ".ToPort"); err != nil {
			return nil, err
		}
		for _, j := range p.indices(pre + ".IpRanges") {
			rp := pre + ".IpRanges." + strconv.Itoa(j)
			perm.CIDRs = append(perm.CIDRs, vpc.CIDRSource{CIDR: p.str(rp + ".CidrIp"), Description: p.str(rp + ".Description")})
		}
		for _, j := range p.indices(pre + ".Groups") {
			gp := pre + ".Groups." + strconv.Itoa(j)
			perm.Groups = append(perm.Groups, vpc.GroupSource{GroupID: p.str(gp + ".GroupId"), GroupName: p.str(gp + ".GroupName"),
				UserID: p.str(gp + ".UserId"), Description: p.str(gp + ".Description")})
		}
		if len(p.indices(pre+".Ipv6Ranges")) > 0 || len(p.indices(pre+".PrefixListIds")) > 0 {
			return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "IPv6 ranges and prefix lists are not supported; use IpRanges (IPv4 CIDR) or UserIdGroupPairs."}
		}
		out = append(out, perm)
	}
	short := p.has("IpProtocol") || p.has("CidrIp") || p.has("SourceSecurityGroupName") || p.has("FromPort") || p.has("ToPort")
	if !short {
		return out, nil
	}
	if len(out) > 0 {
		return nil, &vpc.Error{Code: vpc.CodeInvalidParameterCombo, Message: "The parameter IpPermissions cannot be used with IpProtocol, FromPort, ToPort, CidrIp or SourceSecurityGroupName."}
	}
	perm := vpc.Permission{Protocol: p.str("IpProtocol")}
	if perm.Protocol == "" {
		perm.Protocol = "-1"
	}
	var err error
	if perm.FromPort, err = p.int32p("FromPort"); err != nil {
		return nil, err
	}
	if perm.ToPort, err = p.int32p("ToPort"); err != nil {
		return nil, err
	}
	if c := p.str("CidrIp"); c != "" {
		perm.CIDRs = append(perm.CIDRs, vpc.CIDRSource{CIDR: c})
	}
	if n := p.str("SourceSecurityGroupName"); n != "" {
		src := vpc.GroupSource{GroupName: n, UserID: p.str("SourceSecurityGroupOwnerId")}
		if strings.HasPrefix(n, "sg-") {
			src = vpc.GroupSource{GroupID: n, UserID: src.UserID}
		}
		perm.Groups = append(perm.Groups, src)
	}
	return append(out, perm), nil
}
