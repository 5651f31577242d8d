package iam

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// PolicyKind says which rules a policy document must follow.
type PolicyKind int

const (
	// IdentityPolicy is attached to a role (inline or managed): it names
	// Action and Resource, never a Principal.
	IdentityPolicy PolicyKind = iota
	// TrustPolicy is a role's AssumeRolePolicyDocument: it names a
	// Principal and no Resource.
	TrustPolicy
	// ResourcePolicy is attached to a resource (an SQS queue's Policy):
	// each statement names a Principal; Resource is optional.
	ResourcePolicy
)

// Effect of a statement.
type Effect string

const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Policy is a parsed and validated policy document.
type Policy struct {
	Version    string
	ID         string
	Statements []Statement
}

// Statement is one statement of a policy. Exactly one of Action/NotAction
// is set; for identity policies exactly one of Resource/NotResource.
type Statement struct {
	Sid          string
	Effect       Effect
	Action       []string
	NotAction    []string
	Resource     []string
	NotResource  []string
	Principal    map[string][]string // "AWS", "Service", "Federated", or "*"
	NotPrincipal map[string][]string
	Condition    []Condition
}

// Condition is one (operator, key, values) test of a statement's Condition
// block; a statement matches when all of its conditions hold.
type Condition struct {
	Operator string // as written, e.g. "ForAllValues:StringEquals"
	Key      string // lower case
	Values   []string

	op        string // base operator, e.g. "StringEquals"
	set       string // "", "ForAllValues", "ForAnyValue"
	ifExists  bool
	negated   bool
	matchFunc func(policy, ctx string) bool
}

// Request is what is being authorized.
type Request struct {
	Action   string // "ec2:CreateNetworkInterface"
	Resource string // an ARN or "*"
	// Principal, for trust policies: type ("Service", "AWS", "Federated")
	// and id ("lambda.amazonaws.com").
	PrincipalType, PrincipalID string
	// Context holds condition keys (case-insensitive), e.g.
	// "lambda:VpcIds": {"vpc-1"}.
	Context map[string][]string
}

// Decision is the outcome of evaluating a request against policies.
type Decision int

const (
	ImplicitDeny Decision = iota
	Allowed
	ExplicitDeny
)

func (d Decision) String() string {
	switch d {
	case Allowed:
		return "Allow"
	case ExplicitDeny:
		return "ExplicitDeny"
	default:
		return "ImplicitDeny"
	}
}

// strList is a JSON string or array of strings. Booleans and numbers (as
// in condition values) are kept in their JSON text form.
type strList []string

func (s *strList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var raw []json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return err
		}
		out := make([]string, 0, len(raw))
		for _, r := range raw {
			v, err := scalar(r)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		*s = out
		return nil
	}
	v, err := scalar(b)
	if err != nil {
		return err
	}
	*s = []string{v}
	return nil
}

func scalar(b json.RawMessage) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "", fmt.Errorf("empty value")
	}
	switch b[0] {
	case '"':
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	case 't', 'f':
		var v bool
		if err := json.Unmarshal(b, &v); err != nil {
			return "", err
		}
		return strconv.FormatBool(v), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		err := json.Unmarshal(b, &n)
		return n.String(), err
	}
	return "", fmt.Errorf("expected a string, number or boolean, got %.20s", b)
}

type rawPolicy struct {
	Version   string          `json:"Version"`
	ID        string          `json:"Id"`
	Statement json.RawMessage `json:"Statement"`
}

type rawStatement struct {
	Sid          string                        `json:"Sid"`
	Effect       string                        `json:"Effect"`
	Action       *strList                      `json:"Action"`
	NotAction    *strList                      `json:"NotAction"`
	Resource     *strList                      `json:"Resource"`
	NotResource  *strList                      `json:"NotResource"`
	Principal    json.RawMessage               `json:"Principal"`
	NotPrincipal json.RawMessage               `json:"NotPrincipal"`
	Condition    map[string]map[string]strList `json:"Condition"`
}

// ParsePolicy parses and validates a policy document. Errors wrap
// ErrMalformedPolicyDocument and say what is wrong.
func ParsePolicy(doc string, kind PolicyKind) (*Policy, error) {
	var rp rawPolicy
	dec := json.NewDecoder(strings.NewReader(doc))
	if err := dec.Decode(&rp); err != nil {
		return nil, malformed("Syntax errors in policy: %v.", err)
	}
	if dec.More() {
		return nil, malformed("Syntax errors in policy: trailing data after the document.")
	}
	switch rp.Version {
	case "", "2012-10-17", "2008-10-17":
	default:
		return nil, malformed("The policy Version %q is not valid; use \"2012-10-17\".", rp.Version)
	}
	st := bytes.TrimSpace(rp.Statement)
	if len(st) == 0 || string(st) == "null" {
		return nil, malformed("Missing required field Statement.")
	}
	var raws []rawStatement
	if st[0] == '[' {
		if err := json.Unmarshal(st, &raws); err != nil {
			return nil, malformed("Syntax errors in policy: %v.", err)
		}
	} else {
		var one rawStatement
		if err := json.Unmarshal(st, &one); err != nil {
			return nil, malformed("Syntax errors in policy: %v.", err)
		}
		raws = []rawStatement{one}
	}
	if len(raws) == 0 {
		return nil, malformed("Policy has no statements.")
	}
	p := &Policy{Version: rp.Version, ID: rp.ID}
	for i, rs := range raws {
		s, err := parseStatement(rs, kind)
		if err != nil {
			return nil, fmt.Errorf("%w (statement %d)", err, i+1)
		}
		p.Statements = append(p.Statements, s)
	}
	return p, nil
}

func parseStatement(rs rawStatement, kind PolicyKind) (Statement, error) {
	s := Statement{Sid: rs.Sid}
	switch rs.Effect {
	case "Allow":
		s.Effect = Allow
	case "Deny":
		s.Effect = Deny
	case "":
		return s, malformed("Missing required field Effect.")
	default:
		return s, malformed("Invalid effect: %s (use Allow or Deny).", rs.Effect)
	}
	switch {
	case rs.Action != nil && rs.NotAction != nil:
		return s, malformed("A statement may have Action or NotAction, not both.")
	case rs.Action != nil:
		s.Action = *rs.Action
	case rs.NotAction != nil:
		s.NotAction = *rs.NotAction
	default:
		return s, malformed("Missing required field Action.")
	}
	for _, a := range append(append([]string(nil), s.Action...), s.NotAction...) {
		if a != "*" && !strings.Contains(a, ":") {
			return s, malformed("Action %q must be prefaced by a vendor, e.g. iam, ec2, lambda (iam:GetRole).", a)
		}
	}
	if rs.Resource != nil && rs.NotResource != nil {
		return s, malformed("A statement may have Resource or NotResource, not both.")
	}
	if rs.Resource != nil {
		s.Resource = *rs.Resource
	}
	if rs.NotResource != nil {
		s.NotResource = *rs.NotResource
	}
	var err error
	if s.Principal, err = parsePrincipal(rs.Principal); err != nil {
		return s, err
	}
	if s.NotPrincipal, err = parsePrincipal(rs.NotPrincipal); err != nil {
		return s, err
	}
	switch kind {
	case IdentityPolicy:
		if s.Principal != nil || s.NotPrincipal != nil {
			return s, malformed("Policy document should not specify a principal.")
		}
		if rs.Resource == nil && rs.NotResource == nil {
			return s, malformed("Missing required field Resource.")
		}
	case TrustPolicy:
		if s.Principal == nil && s.NotPrincipal == nil {
			return s, malformed("Missing required field Principal.")
		}
		if rs.Resource != nil || rs.NotResource != nil {
			return s, malformed("Has prohibited field Resource.")
		}
	case ResourcePolicy:
		if s.Principal == nil && s.NotPrincipal == nil {
			return s, malformed("Missing required field Principal.")
		}
	}
	for opName, keys := range rs.Condition {
		for key, vals := range keys {
			c, err := newCondition(opName, key, vals)
			if err != nil {
				return s, err
			}
			s.Condition = append(s.Condition, c)
		}
	}
	return s, nil
}

func parsePrincipal(raw json.RawMessage) (map[string][]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s != "*" {
			return nil, malformed("Invalid principal: use \"*\" or an object such as {\"Service\": \"lambda.amazonaws.com\"}.")
		}
		return map[string][]string{"*": {"*"}}, nil
	}
	var m map[string]strList
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, malformed("Invalid principal: %v.", err)
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		switch k {
		case "AWS", "Service", "Federated", "CanonicalUser":
		default:
			return nil, malformed("Invalid principal type %q (use AWS, Service or Federated).", k)
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, malformed("Invalid principal: empty.")
	}
	return out, nil
}

// conditionOps maps base operators to value matchers (policy value, context
// value) and whether they are negated.
var conditionOps = map[string]struct {
	negated bool
	match   func(policy, ctx string) bool
}{
	"StringEquals":              {false, func(p, c string) bool { return p == c }},
	"StringNotEquals":           {true, func(p, c string) bool { return p == c }},
	"StringEqualsIgnoreCase":    {false, strings.EqualFold},
	"StringNotEqualsIgnoreCase": {true, strings.EqualFold},
	"StringLike":                {false, func(p, c string) bool { return wildcardMatch(p, c, false) }},
	"StringNotLike":             {true, func(p, c string) bool { return wildcardMatch(p, c, false) }},
	"ArnEquals":                 {false, func(p, c string) bool { return wildcardMatch(p, c, false) }},
	"ArnLike":                   {false, func(p, c string) bool { return wildcardMatch(p, c, false) }},
	"ArnNotEquals":              {true, func(p, c string) bool { return wildcardMatch(p, c, false) }},
	"ArnNotLike":                {true, func(p, c string) bool { return wildcardMatch(p, c, false) }},
	"Bool":                      {false, strings.EqualFold},
	"NumericEquals":             {false, numeric(func(p, c float64) bool { return c == p })},
	"NumericNotEquals":          {true, numeric(func(p, c float64) bool { return c == p })},
	"NumericLessThan":           {false, numeric(func(p, c float64) bool { return c < p })},
	"NumericLessThanEquals":     {false, numeric(func(p, c float64) bool { return c <= p })},
	"NumericGreaterThan":        {false, numeric(func(p, c float64) bool { return c > p })},
	"NumericGreaterThanEquals":  {false, numeric(func(p, c float64) bool { return c >= p })},
	"DateEquals":                {false, date(func(p, c time.Time) bool { return c.Equal(p) })},
	"DateNotEquals":             {true, date(func(p, c time.Time) bool { return c.Equal(p) })},
	"DateLessThan":              {false, date(func(p, c time.Time) bool { return c.Before(p) })},
	"DateLessThanEquals":        {false, date(func(p, c time.Time) bool { return !c.After(p) })},
	"DateGreaterThan":           {false, date(func(p, c time.Time) bool { return c.After(p) })},
	"DateGreaterThanEquals":     {false, date(func(p, c time.Time) bool { return !c.Before(p) })},
	"BinaryEquals":              {false, binaryEquals},
	"IpAddress":                 {false, ipInCIDR},
	"NotIpAddress":              {true, ipInCIDR},
	"Null":                      {false, nil}, // special-cased
}

func numeric(f func(p, c float64) bool) func(p, c string) bool {
	return func(p, c string) bool {
		pf, err1 := strconv.ParseFloat(p, 64)
		cf, err2 := strconv.ParseFloat(c, 64)
		return err1 == nil && err2 == nil && f(pf, cf)
	}
}

// dateLayouts are the ISO 8601 forms IAM accepts in Date conditions
// (fractional seconds are accepted by the first).
var dateLayouts = []string{time.RFC3339, "2006-01-02T15:04Z07:00", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02", "20060102T150405Z07:00"}

// parseDate reads an ISO 8601 date or an epoch time in seconds (as
// aws:EpochTime carries it; a fraction is kept).
func parseDate(s string) (time.Time, bool) {
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := math.Floor(f)
		return time.Unix(int64(sec), int64((f-sec)*1e9)), true
	}
	return time.Time{}, false
}

// binaryEquals compares base64 values by their bytes (BinaryEquals: the
// policy and the request both carry base64).
func binaryEquals(p, c string) bool {
	pb, err1 := base64.StdEncoding.DecodeString(p)
	cb, err2 := base64.StdEncoding.DecodeString(c)
	return err1 == nil && err2 == nil && bytes.Equal(pb, cb)
}

func date(f func(p, c time.Time) bool) func(p, c string) bool {
	return func(p, c string) bool {
		pt, ok1 := parseDate(p)
		ct, ok2 := parseDate(c)
		return ok1 && ok2 && f(pt, ct)
	}
}

func ipInCIDR(p, c string) bool {
	ip := net.ParseIP(c)
	if ip == nil {
		return false
	}
	if !strings.Contains(p, "/") {
		return ip.Equal(net.ParseIP(p))
	}
	_, n, err := net.ParseCIDR(p)
	return err == nil && n.Contains(ip)
}

func newCondition(opName, key string, vals []string) (Condition, error) {
	c := Condition{Operator: opName, Key: strings.ToLower(key), Values: vals}
	base := opName
	if set, rest, ok := strings.Cut(base, ":"); ok {
		if set != "ForAllValues" && set != "ForAnyValue" {
			return c, malformed("Invalid Condition type : %s.", opName)
		}
		c.set, base = set, rest
	}
	if b, ok := strings.CutSuffix(base, "IfExists"); ok && b != "Null" {
		c.ifExists, base = true, b
	}
	op, ok := conditionOps[base]
	if !ok {
		return c, malformed("Invalid Condition type : %s.", opName)
	}
	if len(vals) == 0 {
		return c, malformed("Condition %s on %s has no values.", opName, key)
	}
	c.op, c.negated, c.matchFunc = base, op.negated, op.match
	return c, nil
}

// holds evaluates the condition against the request context.
func (c *Condition) holds(ctx map[string][]string) bool {
	vals, present := ctx[c.Key]
	if c.op == "Null" {
		want := strings.EqualFold(c.Values[0], "true") // true: key must be absent
		return want == (!present || len(vals) == 0)
	}
	// valueOK: does one context value satisfy the operator against the
	// policy values (any of them for positive operators, none for negated)?
	valueOK := func(v string) bool {
		for _, p := range c.Values {
			if c.matchFunc(p, v) {
				return !c.negated
			}
		}
		return c.negated
	}
	switch c.set {
	case "ForAllValues":
		// Every context value must satisfy; vacuously true when the key is
		// absent or empty (as on AWS).
		for _, v := range vals {
			if !valueOK(v) {
				return false
			}
		}
		return true
	case "ForAnyValue":
		for _, v := range vals {
			if valueOK(v) {
				return true
			}
		}
		return false
	}
	if !present || len(vals) == 0 {
		// Missing key: IfExists makes the condition true; negated
		// operators are true (nothing equals), positive ones false.
		return c.ifExists || c.negated
	}
	if c.negated {
		for _, v := range vals {
			if !valueOK(v) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if valueOK(v) {
			return true
		}
	}
	return false
}

// Evaluate decides req against the statements of policies: an explicit
// Deny wins, otherwise any Allow allows, otherwise the request is
// implicitly denied.
func Evaluate(req Request, policies ...*Policy) Decision {
	ctx := req.Context
	for k := range ctx {
		if k != strings.ToLower(k) {
			ctx = lowerKeys(req.Context)
			break
		}
	}
	d := ImplicitDeny
	for _, p := range policies {
		if p == nil {
			continue
		}
		for i := range p.Statements {
			s := &p.Statements[i]
			if !s.matches(&req, ctx) {
				continue
			}
			if s.Effect == Deny {
				return ExplicitDeny
			}
			d = Allowed
		}
	}
	return d
}

func lowerKeys(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		lk := strings.ToLower(k)
		out[lk] = append(out[lk], v...)
	}
	return out
}

func (s *Statement) matches(req *Request, ctx map[string][]string) bool {
	if s.Action != nil && !anyMatch(s.Action, req.Action, true) {
		return false
	}
	if s.NotAction != nil && anyMatch(s.NotAction, req.Action, true) {
		return false
	}
	if s.Resource != nil && !anyMatch(s.Resource, req.Resource, false) {
		return false
	}
	if s.NotResource != nil && anyMatch(s.NotResource, req.Resource, false) {
		return false
	}
	if s.Principal != nil && !principalMatch(s.Principal, req) {
		return false
	}
	if s.NotPrincipal != nil && principalMatch(s.NotPrincipal, req) {
		return false
	}
	for i := range s.Condition {
		if !s.Condition[i].holds(ctx) {
			return false
		}
	}
	return true
}

func anyMatch(patterns []string, v string, fold bool) bool {
	for _, p := range patterns {
		if wildcardMatch(p, v, fold) {
			return true
		}
	}
	return false
}

func principalMatch(pr map[string][]string, req *Request) bool {
	if _, ok := pr["*"]; ok {
		return true
	}
	if req.PrincipalType == "" {
		return false
	}
	ids := pr[req.PrincipalType]
	for _, id := range ids {
		if id == "*" || id == req.PrincipalID {
			return true
		}
	}
	return false
}

// wildcardMatch reports whether s matches pattern, where * matches any run
// of characters and ? exactly one. fold makes it case-insensitive (ASCII).
func wildcardMatch(pattern, s string, fold bool) bool {
	eq := func(a, b byte) bool {
		if a == b {
			return true
		}
		if !fold {
			return false
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		return a == b
	}
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || eq(pattern[p], s[i])):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ConditionHolds evaluates one condition of another service's policy
// document (Lambda's resource policies) with this evaluator: operator as
// written ("StringEquals", "ForAnyValue:NumericLessThanIfExists", …), the
// request's values of its key (none: the key is absent) and the policy's
// values. An operator IAM does not know never holds.
func ConditionHolds(operator string, have, want []string) bool {
	c, err := newCondition(operator, "k", want)
	if err != nil {
		return false
	}
	if len(have) == 0 {
		return c.holds(nil)
	}
	return c.holds(map[string][]string{"k": have})
}
