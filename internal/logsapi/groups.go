package logsapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// group is the durable record of a log group: one created with
// CreateLogGroup, or a function's group once it got a retention policy.
// A function's group exists without a record while the function does.
type group struct {
	Account       string            `json:"Account"`
	Name          string            `json:"Name"`
	Created       time.Time         `json:"Created"`
	RetentionDays int               `json:"RetentionDays,omitempty"`
	Tags          map[string]string `json:"Tags,omitempty"`
}

// groupView is a log group as read: its record (if any) and the functions
// writing to it.
type groupView struct {
	Name      string
	Created   time.Time
	Retention int // days; 0 = never expire
	Functions []control.GroupFunction
	rec       *group
	rev       uint64
}

func groupKey(acct, name string) string {
	return acct + "." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// retentionDays are the values PutRetentionPolicy accepts.
var retentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// cutoff is the oldest event time the group keeps (zero: everything).
func (g *groupView) cutoff(now time.Time) time.Time {
	if g.Retention <= 0 {
		return time.Time{}
	}
	return now.Add(-time.Duration(g.Retention) * 24 * time.Hour)
}

func (g *groupView) arn(region, acct string) string {
	return "arn:aws:logs:" + region + ":" + acct + ":log-group:" + g.Name
}

// groups lists the account's log groups, sorted by name.
func (s *Service) listGroups(ctx context.Context, acct string) ([]*groupView, error) {
	byName := map[string]*groupView{}
	recs, err := s.groups.List(ctx, acct+".*")
	if err != nil {
		return nil, err
	}
	for _, e := range recs {
		g := e.Value
		byName[g.Name] = &groupView{Name: g.Name, Created: g.Created, Retention: g.RetentionDays, rec: g, rev: e.Revision}
	}
	for name, fns := range s.o.Functions.LogGroupFunctions(acct) {
		v := byName[name]
		if v == nil {
			v = &groupView{Name: name, Created: fns[0].Created}
			for _, f := range fns {
				if f.Created.Before(v.Created) {
					v.Created = f.Created
				}
			}
			byName[name] = v
		}
		v.Functions = fns
	}
	out := make([]*groupView, 0, len(byName))
	for _, v := range byName {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// getGroup returns one log group or ResourceNotFoundException.
func (s *Service) getGroup(ctx context.Context, acct, name string) (*groupView, error) {
	v := &groupView{Name: name}
	rec, rev, err := s.groups.Get(ctx, groupKey(acct, name))
	switch {
	case err == nil:
		v.Created, v.Retention, v.rec, v.rev = rec.Created, rec.RetentionDays, rec, rev
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	if fns := s.o.Functions.LogGroupFunctions(acct)[name]; len(fns) > 0 {
		v.Functions = fns
		if v.rec == nil {
			v.Created = fns[0].Created
		}
	}
	if v.rec == nil && len(v.Functions) == 0 {
		return nil, notFound("The specified log group does not exist.")
	}
	return v, nil
}

// groupName reads logGroupName / logGroupIdentifier (a name or an ARN).
func groupName(c *call, name, ident string) (string, error) {
	switch {
	case name != "" && ident != "":
		return "", invalidParam("LogGroupName and LogGroupIdentifier are mutually exclusive: pass one of them")
	case ident != "":
		if strings.HasPrefix(ident, "arn:") {
			parts := strings.SplitN(ident, ":", 7)
			if len(parts) < 7 || parts[2] != "logs" || parts[5] != "log-group" {
				return "", invalidParam(fmt.Sprintf("logGroupIdentifier %q is not a log group ARN (arn:aws:logs:REGION:ACCOUNT:log-group:NAME)", ident))
			}
			if parts[4] != c.id.AccountID {
				return "", &Error{Code: "AccessDeniedException", Message: fmt.Sprintf("The log group %s belongs to another account", ident)}
			}
			name = strings.TrimSuffix(parts[6], ":*")
		} else {
			name = ident
		}
	}
	if name == "" {
		return "", invalidParam("logGroupName is required: pass the log group's name (e.g. /aws/lambda/FUNCTION)")
	}
	if err := control.ValidateLogGroupName("logGroupName", name); err != nil {
		return "", invalidParam(err.(*control.Error).Message)
	}
	return name, nil
}

func (s *Service) describeLogGroups(c *call) error {
	var in struct {
		LogGroupNamePrefix  string `json:"logGroupNamePrefix"`
		LogGroupNamePattern string `json:"logGroupNamePattern"`
		NextToken           string `json:"nextToken"`
		Limit               *int   `json:"limit"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	if in.LogGroupNamePrefix != "" && in.LogGroupNamePattern != "" {
		return invalidParam("LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive: pass one of them")
	}
	limit, err := checkLimit(in.Limit, 50)
	if err != nil {
		return err
	}
	all, err := s.listGroups(c.ctx, c.id.AccountID)
	if err != nil {
		return err
	}
	after := ""
	if in.NextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		if err != nil {
			return invalidParam(fmt.Sprintf("The specified nextToken %q is invalid: pass the nextToken of the previous response", in.NextToken))
		}
		after = string(b)
	}
	type wire struct {
		Name         string `json:"logGroupName"`
		CreationTime int64  `json:"creationTime"`
		Retention    *int   `json:"retentionInDays,omitempty"`
		Metrics      int    `json:"metricFilterCount"`
		Arn          string `json:"arn"`
		GroupArn     string `json:"logGroupArn"`
		StoredBytes  int64  `json:"storedBytes"`
		Class        string `json:"logGroupClass"`
	}
	out := []wire{}
	next := ""
	for _, g := range all {
		if in.LogGroupNamePrefix != "" && !strings.HasPrefix(g.Name, in.LogGroupNamePrefix) {
			continue
		}
		if in.LogGroupNamePattern != "" && !strings.Contains(strings.ToLower(g.Name), strings.ToLower(in.LogGroupNamePattern)) {
			continue
		}
		if after != "" && g.Name <= after {
			continue
		}
		if len(out) == limit {
			next = base64.RawURLEncoding.EncodeToString([]byte(out[len(out)-1].Name))
			break
		}
		w := wire{Name: g.Name, CreationTime: g.Created.UnixMilli(), Arn: g.arn(c.region(), c.id.AccountID) + ":*",
			GroupArn: g.arn(c.region(), c.id.AccountID), Class: "STANDARD"}
		if g.Retention > 0 {
			r := g.Retention
			w.Retention = &r
		}
		for _, f := range g.Functions {
			w.StoredBytes += s.o.Logs.Usage(c.id.AccountID, f.Name)
		}
		out = append(out, w)
	}
	resp := map[string]any{"logGroups": out}
	if next != "" {
		resp["nextToken"] = next
	}
	return c.reply(resp)
}

func checkLimit(l *int, max int) (int, error) {
	if l == nil {
		return max, nil
	}
	if *l < 1 || *l > max {
		return 0, invalidParam(fmt.Sprintf("1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and %d", *l, max))
	}
	return *l, nil
}

func (s *Service) createLogGroup(c *call) error {
	var in struct {
		LogGroupName  string            `json:"logGroupName"`
		KmsKeyID      string            `json:"kmsKeyId"`
		Tags          map[string]string `json:"tags"`
		LogGroupClass string            `json:"logGroupClass"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	name, err := groupName(c, in.LogGroupName, "")
	if err != nil {
		return err
	}
	if in.KmsKeyID != "" {
		return invalidParam("kmsKeyId: lambdaplane does not encrypt log groups with KMS keys; omit it")
	}
	if in.LogGroupClass != "" && in.LogGroupClass != "STANDARD" {
		return invalidParam(fmt.Sprintf("logGroupClass %q: lambdaplane keeps STANDARD log groups only", in.LogGroupClass))
	}
	if len(s.o.Functions.LogGroupFunctions(c.id.AccountID)[name]) > 0 {
		return &Error{Code: "ResourceAlreadyExistsException", Message: "The specified log group already exists"}
	}
	_, err = s.groups.Create(c.ctx, groupKey(c.id.AccountID, name), &group{Account: c.id.AccountID, Name: name, Created: s.o.Now().UTC(), Tags: in.Tags})
	if errors.Is(err, store.ErrExists) {
		return &Error{Code: "ResourceAlreadyExistsException", Message: "The specified log group already exists"}
	}
	if err != nil {
		return err
	}
	return c.reply(struct{}{})
}

func (s *Service) deleteLogGroup(c *call) error {
	var in struct {
		LogGroupName string `json:"logGroupName"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	name, err := groupName(c, in.LogGroupName, "")
	if err != nil {
		return err
	}
	g, err := s.getGroup(c.ctx, c.id.AccountID, name)
	if err != nil {
		return err
	}
	// The events go; a function keeps writing to its group (Lambda
	// creates it again), which then starts empty.
	for _, f := range g.Functions {
		if err := s.o.Logs.Purge(c.ctx, c.id.AccountID, f.Name); err != nil {
			return err
		}
	}
	if g.rec != nil {
		if err := s.groups.Delete(c.ctx, groupKey(c.id.AccountID, name)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return c.reply(struct{}{})
}

func (s *Service) putRetention(c *call) error {
	var in struct {
		LogGroupName    string `json:"logGroupName"`
		RetentionInDays *int   `json:"retentionInDays"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	name, err := groupName(c, in.LogGroupName, "")
	if err != nil {
		return err
	}
	if in.RetentionInDays == nil {
		return invalidParam("retentionInDays is required")
	}
	days := *in.RetentionInDays
	valid := false
	for _, d := range retentionDays {
		valid = valid || d == days
	}
	if !valid {
		vals := make([]string, len(retentionDays))
		for i, d := range retentionDays {
			vals[i] = strconv.Itoa(d)
		}
		return invalidParam(fmt.Sprintf("1 validation error detected: Value '%d' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [%s]", days, strings.Join(vals, ", ")))
	}
	return s.setRetention(c, name, days)
}

func (s *Service) deleteRetention(c *call) error {
	var in struct {
		LogGroupName string `json:"logGroupName"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	name, err := groupName(c, in.LogGroupName, "")
	if err != nil {
		return err
	}
	return s.setRetention(c, name, 0)
}

// setRetention writes a group's retention (0: never expire), creating the
// record of a function's group.
func (s *Service) setRetention(c *call, name string, days int) error {
	for attempt := 0; ; attempt++ {
		g, err := s.getGroup(c.ctx, c.id.AccountID, name)
		if err != nil {
			return err
		}
		key := groupKey(c.id.AccountID, name)
		if g.rec == nil {
			_, err = s.groups.Create(c.ctx, key, &group{Account: c.id.AccountID, Name: name, Created: g.Created, RetentionDays: days})
		} else {
			rec := *g.rec
			rec.RetentionDays = days
			_, err = s.groups.UpdateAt(c.ctx, key, &rec, g.rev)
		}
		if err == nil {
			return c.reply(struct{}{})
		}
		if attempt >= 5 || !(errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict)) {
			return err
		}
	}
}

// purgeLoop removes, while this server holds the lease, the records older
// than their group's retention.
func (s *Service) purgeLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.o.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.lease.hold(ctx) {
			continue
		}
		if err := s.purgeExpired(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("log retention purge", "err", err)
		}
	}
}

// purgeExpired removes the stored records of every group with a retention
// policy that are older than it.
func (s *Service) purgeExpired(ctx context.Context) error {
	recs, err := s.groups.List(ctx, ">")
	if err != nil {
		return err
	}
	now := s.o.Now()
	var errs []error
	for _, e := range recs {
		g := e.Value
		if g.RetentionDays <= 0 {
			continue
		}
		v := groupView{Retention: g.RetentionDays}
		cut := v.cutoff(now)
		for _, f := range s.o.Functions.LogGroupFunctions(g.Account)[g.Name] {
			if err := s.o.Logs.PurgeBefore(ctx, g.Account, f.Name, cut); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", g.Account, f.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
