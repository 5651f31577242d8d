package control

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// Resource-based policies of functions, versions and aliases
// (AddPermission, RemovePermission, GetPolicy, Put/Get/DeleteResourcePolicy).
// One record per (function, qualifier) in the "policies" bucket, mirrored in
// memory by a watch so that an invoke from another account is authorized
// without a store round trip, on every host.

// MaxPolicySize is Lambda's limit on a function's resource policy (20 KB).
const MaxPolicySize = 20480

var (
	statementIDRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,100}$`)
	policyActRe   = regexp.MustCompile(`^(lambda:[*]|lambda:[a-zA-Z]+|[*])$`)
	servicePrinRe = regexp.MustCompile(`^[a-z0-9.-]+\.amazonaws\.com(\.cn)?$`)
	iamArnRe      = regexp.MustCompile(`^arn:aws[a-zA-Z-]*:(iam|sts)::[0-9]{12}:.+$`)
	orgIDRe       = regexp.MustCompile(`^o-[a-z0-9]{10,32}$`)
)

// PolicyStatement is one statement of a resource policy, in the JSON shape
// Lambda writes (field order as GetPolicy shows it). Principal, Action and
// Resource hold a string or a list; Condition maps an operator to keys and
// values (a string or a list).
type PolicyStatement struct {
	Sid       string                    `json:"Sid"`
	Effect    string                    `json:"Effect"`
	Principal any                       `json:"Principal"`
	Action    any                       `json:"Action"`
	Resource  any                       `json:"Resource"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// ResourcePolicy is the stored policy of one function, version or alias.
type ResourcePolicy struct {
	AccountID    string `json:"AccountID"`
	Region       string `json:"Region"`
	FunctionName string `json:"FunctionName"`
	Qualifier    string `json:"Qualifier,omitempty"` // "" = the unqualified function
	// FunctionCreated is the Created time of the function the policy
	// belongs to: a policy left behind by a deleted function of the same
	// name (a crash between the two deletes) never applies to a new one.
	FunctionCreated time.Time         `json:"FunctionCreated"`
	RevisionID      string            `json:"RevisionId"`
	Statements      []PolicyStatement `json:"Statements"`
}

// Document is the policy as GetPolicy returns it.
func (p *ResourcePolicy) Document() string {
	st := p.Statements
	if st == nil {
		st = []PolicyStatement{}
	}
	b, _ := json.Marshal(struct {
		Version   string            `json:"Version"`
		ID        string            `json:"Id"`
		Statement []PolicyStatement `json:"Statement"`
	}{"2012-10-17", "default", st})
	return string(b)
}

// PermissionInput is AddPermission's body.
type PermissionInput struct {
	StatementId         string `json:"StatementId"`
	Action              string `json:"Action"`
	Principal           string `json:"Principal"`
	SourceArn           string `json:"SourceArn"`
	SourceAccount       string `json:"SourceAccount"`
	EventSourceToken    string `json:"EventSourceToken"`
	RevisionId          string `json:"RevisionId"`
	PrincipalOrgID      string `json:"PrincipalOrgID"`
	FunctionUrlAuthType string `json:"FunctionUrlAuthType"`
}

// Caller is who asks for access to another account's resource: its
// account and the ARNs a policy principal may name (the account root, the
// IAM user, the role of a role session), or a service principal.
type Caller struct {
	AccountID string
	ARNs      []string
	Service   string // "sqs.amazonaws.com" for a service acting on its own
}

// policyKey names a policy record: ACCOUNT.NAME for the function, plus
// .QUALIFIER for a version or alias ($LATEST is the function's).
func policyKey(acct, name, qualifier string) string {
	if qualifier == "" || qualifier == LatestVersion {
		return acct + "." + name
	}
	return acct + "." + name + "." + qualifier
}

// policyState is the policies bucket and its in-memory mirror.
type policyState struct {
	table *store.Table[ResourcePolicy]
	mu    sync.RWMutex
	m     map[string]cached[ResourcePolicy]
}

func (p *policyState) put(key string, v *ResourcePolicy, rev uint64) {
	applyTo(&p.mu, p.m, key, v, rev)
}

func (p *policyState) get(key string) *ResourcePolicy {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.m[key].v
}

// openPolicies opens the policy and function URL buckets and starts their
// watches (called by New).
func (s *Service) openAccess(ctx, wctx context.Context) error {
	s.access = &accessState{pol: &policyState{m: map[string]cached[ResourcePolicy]{}}, urls: newURLState()}
	var err error
	if s.access.pol.table, err = store.NewTable[ResourcePolicy](ctx, s.o.Store, "policies"); err != nil {
		return err
	}
	if err := watch(wctx, s.access.pol.table.KV(), track(&s.access.applied[0], s.access.pol.put)); err != nil {
		return err
	}
	if s.access.layerPol, err = store.NewTable[LayerPolicy](ctx, s.o.Store, "layerpolicies"); err != nil {
		return err
	}
	return s.openURLs(ctx, wctx)
}

// accessState holds resource policies, layer policies and function URLs.
type accessState struct {
	pol      *policyState
	layerPol *store.Table[LayerPolicy]
	urls     *urlState
	// applied: the newest revision the policies and functionurls watches
	// have put into memory (Sync).
	applied [2]appliedRev
}

// syncAccess is Sync for resource policies and function URLs: a grant or
// URL acknowledged on one host is in every host's memory before the write
// is answered.
func (s *Service) syncAccess(ctx context.Context) error {
	if s.access == nil {
		return nil
	}
	for i, kv := range []jetstream.KeyValue{s.access.pol.table.KV(), s.access.urls.table.KV()} {
		if err := waitApplied(ctx, kv, &s.access.applied[i]); err != nil {
			return err
		}
	}
	return nil
}

// qualifiedRef parses the function a call names, in the caller's
// account and region, with its qualifier: the parameter's or the one in
// the name (they must agree); $LATEST counts as none.
func qualifiedRef(acct, region, name, qualifier string) (Ref, error) {
	r, err := ParseRef(name)
	if err != nil {
		return Ref{}, err
	}
	if err := refInAccount(r, acct, region); err != nil {
		return Ref{}, err
	}
	if qualifier == "" {
		qualifier = r.Qualifier
	} else if r.Qualifier != "" && r.Qualifier != qualifier {
		return Ref{}, invalidParam("The derived qualifier from the function name does not match the specified qualifier.")
	}
	if qualifier == LatestVersion {
		qualifier = ""
	}
	r.Qualifier = qualifier
	return r, nil
}

// policyTarget resolves the function (and qualifier) a permission call
// names: the function must be the caller's and exist; a qualifier must
// name an existing version or alias.
func (s *Service) policyTarget(acct, region, name, qualifier string) (Ref, *Function, error) {
	r, err := qualifiedRef(acct, region, name, qualifier)
	if err != nil {
		return Ref{}, nil, err
	}
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return Ref{}, nil, err
	}
	if qualifier != "" {
		if _, _, err := s.resolve(acct, region, r.Name, qualifier); err != nil {
			return Ref{}, nil, err
		}
	}
	return r, fn, nil
}

// currentPolicy reads a policy record from the store (with its revision),
// ignoring one left by an earlier function of the same name.
func (s *Service) currentPolicy(ctx context.Context, key string, fn *Function) (*ResourcePolicy, uint64, error) {
	p, rev, err := s.access.pol.table.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if !p.FunctionCreated.Equal(fn.Created) {
		return nil, rev, nil // stale: replaced on write
	}
	return p, rev, nil
}

// writePolicy stores p under key at revision rev (0: create), or deletes
// the record when p has no statement.
func (s *Service) writePolicy(ctx context.Context, key string, p *ResourcePolicy, rev uint64) error {
	if len(p.Statements) == 0 {
		if err := s.access.pol.table.Delete(ctx, key); err != nil {
			return err
		}
		s.access.pol.put(key, nil, 0)
		return nil
	}
	var nrev uint64
	var err error
	if rev == 0 {
		nrev, err = s.access.pol.table.Create(ctx, key, p)
	} else {
		nrev, err = s.access.pol.table.UpdateAt(ctx, key, p, rev)
	}
	if errors.Is(err, store.ErrExists) {
		return store.ErrConflict
	}
	if err != nil {
		return err
	}
	s.access.pol.put(key, p, nrev)
	return nil
}

// updatePolicy applies change to the current policy of the function named
// by (name, qualifier) and writes it, retrying on concurrent writers.
func (s *Service) updatePolicy(ctx context.Context, acct, region, name, qualifier string, change func(r Ref, fn *Function, p *ResourcePolicy) error) (*ResourcePolicy, error) {
	for attempt := 0; ; attempt++ {
		r, fn, err := s.policyTarget(acct, region, name, qualifier)
		if err != nil {
			return nil, err
		}
		key := policyKey(acct, r.Name, r.Qualifier)
		cur, rev, err := s.currentPolicy(ctx, key, fn)
		if err != nil {
			return nil, err
		}
		p := &ResourcePolicy{AccountID: acct, Region: region, FunctionName: r.Name, Qualifier: r.Qualifier, FunctionCreated: fn.Created}
		if cur != nil {
			*p = *cur
			p.Statements = append([]PolicyStatement(nil), cur.Statements...)
		}
		if err := change(r, fn, p); err != nil {
			return nil, err
		}
		p.RevisionID = newRevision()
		if len(p.Document()) > MaxPolicySize {
			return nil, errf("PolicyLengthExceededException", 400, "The final policy size (%d) is bigger than the limit (%d).", len(p.Document()), MaxPolicySize)
		}
		err = s.writePolicy(ctx, key, p, rev)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// principalOf turns AddPermission's Principal into the statement's.
func principalOf(p string) (any, error) {
	switch {
	case p == "*":
		return "*", nil
	case accountRe.MatchString(p):
		return map[string]any{"AWS": "arn:aws:iam::" + p + ":root"}, nil
	case iamArnRe.MatchString(p):
		return map[string]any{"AWS": p}, nil
	case servicePrinRe.MatchString(p):
		return map[string]any{"Service": p}, nil
	}
	return nil, invalidParam("The provided principal was invalid. Please check the principal and try again. (%q: use an account id, an IAM ARN, a service principal such as s3.amazonaws.com, or *)", p)
}

// AddPermission adds a statement to the resource policy of a function,
// version or alias and returns the statement as JSON.
func (s *Service) AddPermission(ctx context.Context, acct, region, name, qualifier string, in *PermissionInput) (string, error) {
	if !statementIDRe.MatchString(in.StatementId) {
		return "", validation("1 validation error detected: Value '%s' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)", in.StatementId)
	}
	if !policyActRe.MatchString(in.Action) {
		return "", validation("1 validation error detected: Value '%s' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])", in.Action)
	}
	if in.Principal == "" {
		return "", validation("1 validation error detected: Value null at 'principal' failed to satisfy constraint: Member must not be null")
	}
	prin, err := principalOf(in.Principal)
	if err != nil {
		return "", err
	}
	cond := map[string]map[string]any{}
	add := func(op, key, v string) {
		if cond[op] == nil {
			cond[op] = map[string]any{}
		}
		cond[op][key] = v
	}
	if in.SourceAccount != "" {
		if !accountRe.MatchString(in.SourceAccount) {
			return "", validation("1 validation error detected: Value '%s' at 'sourceAccount' failed to satisfy constraint: Member must satisfy regular expression pattern: ^\\d{12}$", in.SourceAccount)
		}
		add("StringEquals", "AWS:SourceAccount", in.SourceAccount)
	}
	if in.SourceArn != "" {
		if !strings.HasPrefix(in.SourceArn, "arn:") {
			return "", validation("1 validation error detected: Value '%s' at 'sourceArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:([a-z]{2}(-gov)?-[a-z]+-\\d{1})?:(\\d{12})?:(.*)", in.SourceArn)
		}
		add("ArnLike", "AWS:SourceArn", in.SourceArn)
	}
	if in.EventSourceToken != "" {
		add("StringEquals", "lambda:EventSourceToken", in.EventSourceToken)
	}
	if in.PrincipalOrgID != "" {
		if !orgIDRe.MatchString(in.PrincipalOrgID) {
			return "", validation("1 validation error detected: Value '%s' at 'principalOrgID' failed to satisfy constraint: Member must satisfy regular expression pattern: ^o-[a-z0-9]{10,32}$", in.PrincipalOrgID)
		}
		add("StringEquals", "aws:PrincipalOrgID", in.PrincipalOrgID)
	}
	switch in.FunctionUrlAuthType {
	case "":
	case "NONE", "AWS_IAM":
		add("StringEquals", "lambda:FunctionUrlAuthType", in.FunctionUrlAuthType)
	default:
		return "", validation("1 validation error detected: Value '%s' at 'functionUrlAuthType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]", in.FunctionUrlAuthType)
	}
	var stmt PolicyStatement
	_, err = s.updatePolicy(ctx, acct, region, name, qualifier, func(r Ref, fn *Function, p *ResourcePolicy) error {
		if in.RevisionId != "" && (p.RevisionID == "" || p.RevisionID != in.RevisionId) {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id")
		}
		for _, st := range p.Statements {
			if st.Sid == in.StatementId {
				return conflict("The statement id (%s) provided already exists. Please provide a new statement id, or remove the existing statement.", in.StatementId)
			}
		}
		stmt = PolicyStatement{Sid: in.StatementId, Effect: "Allow", Principal: prin, Action: in.Action,
			Resource: QualifiedARN(region, acct, r.Name, r.Qualifier)}
		if len(cond) > 0 {
			stmt.Condition = cond
		}
		p.Statements = append(p.Statements, stmt)
		return nil
	})
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal(stmt)
	return string(b), nil
}

// RemovePermission removes one statement.
func (s *Service) RemovePermission(ctx context.Context, acct, region, name, qualifier, sid, revisionID string) error {
	_, err := s.updatePolicy(ctx, acct, region, name, qualifier, func(r Ref, fn *Function, p *ResourcePolicy) error {
		if revisionID != "" && p.RevisionID != revisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id")
		}
		for i, st := range p.Statements {
			if st.Sid == sid {
				p.Statements = append(p.Statements[:i], p.Statements[i+1:]...)
				return nil
			}
		}
		return notFound("Statement %s is not found in resource policy.", sid)
	})
	return err
}

// GetPolicy returns the policy document and its revision.
func (s *Service) GetPolicy(ctx context.Context, acct, region, name, qualifier string) (string, string, error) {
	r, fn, err := s.policyTarget(acct, region, name, qualifier)
	if err != nil {
		return "", "", err
	}
	p, _, err := s.currentPolicy(ctx, policyKey(acct, r.Name, r.Qualifier), fn)
	if err != nil {
		return "", "", err
	}
	if p == nil || len(p.Statements) == 0 {
		return "", "", notFound("The resource you requested does not exist.")
	}
	return p.Document(), p.RevisionID, nil
}

// parseResourceArn splits a function ARN given to the generic
// Get/Put/DeleteResourcePolicy operations.
func parseResourceArn(acct, region, arn string) (string, string, error) {
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":function:") {
		return "", "", invalidParam("Resource %q is not a function ARN: pass arn:aws:lambda:%s:%s:function:NAME[:QUALIFIER]", arn, region, acct)
	}
	r, err := ParseRef(arn)
	if err != nil {
		return "", "", err
	}
	return arn, r.Qualifier, nil
}

// GetResourcePolicy is GetPolicy by ARN.
func (s *Service) GetResourcePolicy(ctx context.Context, acct, region, arn string) (string, string, error) {
	name, _, err := parseResourceArn(acct, region, arn)
	if err != nil {
		return "", "", err
	}
	return s.GetPolicy(ctx, acct, region, name, "")
}

// PutResourcePolicy replaces the whole policy of a function, version or
// alias with doc (a policy document whose statements may Allow or Deny).
func (s *Service) PutResourcePolicy(ctx context.Context, acct, region, arn, doc, revisionID string) (string, string, error) {
	name, _, err := parseResourceArn(acct, region, arn)
	if err != nil {
		return "", "", err
	}
	var in struct {
		Version   string          `json:"Version"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal([]byte(doc), &in); err != nil {
		return "", "", invalidParam("The policy is not valid JSON: %v", err)
	}
	var sts []PolicyStatement
	if len(in.Statement) > 0 && in.Statement[0] == '{' {
		var one PolicyStatement
		if err := json.Unmarshal(in.Statement, &one); err != nil {
			return "", "", invalidParam("Statement is invalid: %v", err)
		}
		sts = []PolicyStatement{one}
	} else if err := json.Unmarshal(in.Statement, &sts); err != nil || len(sts) == 0 {
		return "", "", invalidParam("The policy must have a Statement: a statement or a list of statements")
	}
	for i, st := range sts {
		if st.Effect != "Allow" && st.Effect != "Deny" {
			return "", "", invalidParam("Statement %d: Effect must be Allow or Deny, not %q", i, st.Effect)
		}
		if st.Principal == nil || st.Action == nil {
			return "", "", invalidParam("Statement %d: Principal and Action are required", i)
		}
		if st.Sid == "" {
			sts[i].Sid = "stmt" + strconv.Itoa(i)
		}
	}
	p, err := s.updatePolicy(ctx, acct, region, name, "", func(r Ref, fn *Function, p *ResourcePolicy) error {
		if revisionID != "" && p.RevisionID != revisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetResourcePolicy API to retrieve the latest Revision Id")
		}
		for i := range sts {
			if sts[i].Resource == nil {
				sts[i].Resource = QualifiedARN(region, acct, r.Name, r.Qualifier)
			}
		}
		p.Statements = sts
		return nil
	})
	if err != nil {
		return "", "", err
	}
	return p.Document(), p.RevisionID, nil
}

// DeleteResourcePolicy removes the whole policy.
func (s *Service) DeleteResourcePolicy(ctx context.Context, acct, region, arn, revisionID string) error {
	name, _, err := parseResourceArn(acct, region, arn)
	if err != nil {
		return err
	}
	_, err = s.updatePolicy(ctx, acct, region, name, "", func(r Ref, fn *Function, p *ResourcePolicy) error {
		if len(p.Statements) == 0 {
			return notFound("The resource you requested does not exist.")
		}
		if revisionID != "" && p.RevisionID != revisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetResourcePolicy API to retrieve the latest Revision Id")
		}
		p.Statements = nil
		return nil
	})
	return err
}

// deletePolicies removes the policies of a deleted function (all
// qualifiers) or, with qualifier, of one deleted version or alias.
func (s *Service) deletePolicies(ctx context.Context, acct, name, qualifier string) {
	if s.access == nil {
		return
	}
	var keys []string
	if qualifier != "" {
		keys = []string{policyKey(acct, name, qualifier)}
	} else {
		prefix := acct + "." + name
		s.access.pol.mu.RLock()
		for k, c := range s.access.pol.m {
			if c.v != nil && (k == prefix || strings.HasPrefix(k, prefix+".")) {
				keys = append(keys, k)
			}
		}
		s.access.pol.mu.RUnlock()
	}
	for _, k := range keys {
		if err := s.access.pol.table.Delete(ctx, k); err != nil {
			s.log.Warn("delete resource policy", "key", k, "err", err)
			continue
		}
		s.access.pol.put(k, nil, 0)
	}
}

// PolicyAllows reports whether the resource policy of the function
// (owner, name) at qualifier lets caller perform action, with the request's
// condition keys in cond. An explicit Deny wins. It reads the in-memory
// mirror only.
func (s *Service) PolicyAllows(owner, region, name, qualifier string, caller Caller, action string, cond map[string][]string) bool {
	if s.access == nil {
		return false
	}
	fn := s.cache.fn(fnKey(owner, name))
	if fn == nil {
		return false
	}
	p := s.access.pol.get(policyKey(owner, name, qualifier))
	if p == nil || !p.FunctionCreated.Equal(fn.Created) {
		return false
	}
	q := qualifier
	if q == LatestVersion {
		q = ""
	}
	resource := QualifiedARN(region, owner, name, q)
	lc := map[string][]string{}
	for k, v := range cond {
		lc[strings.ToLower(k)] = v
	}
	allowed := false
	for i := range p.Statements {
		st := &p.Statements[i]
		if !statementMatches(st, caller, action, resource, lc) {
			continue
		}
		if st.Effect == "Deny" {
			return false
		}
		if st.Effect == "Allow" {
			allowed = true
		}
	}
	return allowed
}

func statementMatches(st *PolicyStatement, caller Caller, action, resource string, cond map[string][]string) bool {
	if !anyWild(strList(st.Action), action, true) {
		return false
	}
	if st.Resource != nil && !anyWild(strList(st.Resource), resource, false) {
		return false
	}
	if !principalMatches(st.Principal, caller) {
		return false
	}
	for op, kv := range st.Condition {
		for k, v := range kv {
			if !conditionHolds(op, cond[strings.ToLower(k)], strList(v)) {
				return false
			}
		}
	}
	return true
}

func principalMatches(p any, c Caller) bool {
	if s, ok := p.(string); ok {
		return s == "*"
	}
	m, ok := p.(map[string]any)
	if !ok {
		return false
	}
	for _, id := range strList(m["AWS"]) {
		if id == "*" || (c.AccountID != "" && (id == c.AccountID || id == "arn:aws:iam::"+c.AccountID+":root")) {
			return true
		}
		for _, a := range c.ARNs {
			if id == a {
				return true
			}
		}
	}
	for _, id := range strList(m["Service"]) {
		if c.Service != "" && id == c.Service {
			return true
		}
	}
	return false
}

// conditionHolds is IAM's condition evaluation (every operator, the
// IfExists suffix, ForAnyValue:/ForAllValues:).
func conditionHolds(op string, have, want []string) bool {
	return iam.ConditionHolds(op, have, want)
}

// strList reads a JSON string-or-list value.
func strList(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []string:
		return t
	case float64:
		return []string{strconv.FormatFloat(t, 'f', -1, 64)}
	case bool:
		return []string{strconv.FormatBool(t)}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, strList(e)...)
		}
		return out
	}
	return nil
}

func anyWild(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if wild(p, s, fold) {
			return true
		}
	}
	return false
}

// wild matches s against a pattern where * is any run and ? one character.
func wild(p, s string, fold bool) bool {
	if fold {
		p, s = strings.ToLower(p), strings.ToLower(s)
	}
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && (p[px] == '?' || p[px] == s[sx]):
			px++
			sx++
		case px < len(p) && p[px] == '*':
			star, mark = px, sx
			px++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// sortedKeys is used by listings of URL configs.
func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
