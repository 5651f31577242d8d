package destinations

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Lambda's defaults and bounds.
const (
	DefaultRetries = 2
	MaxRetries     = 2
	DefaultMaxAge  = 6 * time.Hour
	MinAgeSeconds  = 60
	MaxAgeSeconds  = 21600
)

// Config is one function event invoke config.
type Config struct {
	AccountID                string    `json:"AccountID"`
	Region                   string    `json:"Region"`
	FunctionName             string    `json:"FunctionName"`
	Qualifier                string    `json:"Qualifier"` // "$LATEST", a version or an alias
	MaximumRetryAttempts     *int      `json:"MaximumRetryAttempts,omitempty"`
	MaximumEventAgeInSeconds *int      `json:"MaximumEventAgeInSeconds,omitempty"`
	OnSuccess                string    `json:"OnSuccess,omitempty"`
	OnFailure                string    `json:"OnFailure,omitempty"`
	LastModified             time.Time `json:"LastModified"`
}

// FunctionArn is the qualified ARN the config belongs to.
func (c *Config) FunctionArn() string {
	return control.QualifiedARN(c.Region, c.AccountID, c.FunctionName, c.Qualifier)
}

// Destination is OnSuccess / OnFailure as sent.
type Destination struct {
	Destination *string `json:"Destination"`
}

// DestinationConfig is DestinationConfig as sent.
type DestinationConfig struct {
	OnSuccess *Destination `json:"OnSuccess"`
	OnFailure *Destination `json:"OnFailure"`
}

// Input is Put/UpdateFunctionEventInvokeConfig's request body.
type Input struct {
	MaximumRetryAttempts     *int               `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds *int               `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        *DestinationConfig `json:"DestinationConfig"`
}

// Functions resolves functions (control.Service).
type Functions interface {
	Resolve(acct, region, name, qualifier string) (*control.Config, error)
}

// Roles checks execution roles (iam.Roles).
type Roles interface {
	RoleAllowsRequests(ctx context.Context, accountID, roleARN string, reqs []iam.Request) (ok bool, missing []string, err error)
}

// Options wires Configs.
type Options struct {
	Store     *store.Store
	Functions Functions
	Roles     Roles // nil: no execution-role checks
	Logger    *slog.Logger
	Now       func() time.Time
}

// Configs stores the function event invoke configs.
type Configs struct {
	o     Options
	table *store.Table[Config]
}

// NewConfigs opens the bucket.
func NewConfigs(ctx context.Context, o Options) (*Configs, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t, err := store.NewTable[Config](ctx, o.Store, "eventinvoke")
	if err != nil {
		return nil, err
	}
	return &Configs{o: o, table: t}, nil
}

// keyQualifier: "$" is not a key character; "=" is in no alias or version.
func keyQualifier(q string) string {
	if q == control.LatestVersion {
		return "=LATEST"
	}
	return q
}

func key(acct, fn, q string) string { return acct + "." + fn + "." + keyQualifier(q) }

func validation(format string, a ...any) error {
	return &control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: " + fmt.Sprintf(format, a...)}
}

// target resolves FunctionName (+ Qualifier) to an existing function and
// the qualifier the config is kept under.
func (s *Configs) target(acct, region, name, qualifier string) (*control.Config, string, error) {
	ref, err := control.ParseRef(name)
	if err != nil {
		return nil, "", err
	}
	if ref.AccountID != "" && ref.AccountID != acct {
		return nil, "", control.NotFound("Function not found: %s", name)
	}
	if qualifier != "" && ref.Qualifier != "" && qualifier != ref.Qualifier {
		return nil, "", control.InvalidParam("The derived qualifier from the function name does not match the specified qualifier.")
	}
	if qualifier == "" {
		qualifier = ref.Qualifier
	}
	if qualifier == "" {
		qualifier = control.LatestVersion
	}
	cfg, err := s.o.Functions.Resolve(acct, region, ref.Name, qualifier)
	if err != nil {
		return nil, "", err
	}
	return cfg, qualifier, nil
}

// checkDestination checks a destination ARN's form and that the
// function's execution role may use it.
func (s *Configs) checkDestination(ctx context.Context, acct, role, which, arn string) error {
	p := strings.Split(arn, ":")
	var action, service string
	switch {
	case len(p) == 6 && p[0] == "arn" && p[2] == "sqs" && p[3] != "" && p[4] != "" && p[5] != "":
		action, service = "sqs:SendMessage", "SQS"
	case len(p) >= 7 && len(p) <= 8 && p[0] == "arn" && p[2] == "lambda" && p[5] == "function" && p[6] != "":
		action, service = "lambda:InvokeFunction", "Lambda"
	case len(p) >= 3 && p[0] == "arn" && (p[2] == "sns" || p[2] == "events" || p[2] == "s3"):
		return control.InvalidParam("The destination ARN %s (%s) is of a service lambdaplane does not run: %s destinations are SQS queues or Lambda functions.", arn, which, which)
	default:
		return control.InvalidParam("The destination ARN %s (%s) is invalid: give an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME) or a function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME).", arn, which)
	}
	if s.o.Roles == nil {
		return nil
	}
	ok, _, err := s.o.Roles.RoleAllowsRequests(ctx, acct, role, []iam.Request{{Action: action, Resource: arn}})
	if err != nil || !ok {
		return control.InvalidParam("The function's execution role does not have permissions to call %s on %s: allow %s on %s in %s.",
			strings.SplitN(action, ":", 2)[1], service, action, arn, role)
	}
	return nil
}

func (s *Configs) apply(ctx context.Context, fn *control.Config, c *Config, in *Input) error {
	if in.MaximumRetryAttempts != nil {
		if v := *in.MaximumRetryAttempts; v < 0 || v > MaxRetries {
			return validation("Value '%d' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value %s %d", v,
				map[bool]string{true: "greater than or equal to", false: "less than or equal to"}[v < 0], map[bool]int{true: 0, false: MaxRetries}[v < 0])
		}
		c.MaximumRetryAttempts = in.MaximumRetryAttempts
	}
	if in.MaximumEventAgeInSeconds != nil {
		v := *in.MaximumEventAgeInSeconds
		if v < MinAgeSeconds {
			return validation("Value '%d' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value greater than or equal to %d", v, MinAgeSeconds)
		}
		if v > MaxAgeSeconds {
			return validation("Value '%d' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value less than or equal to %d", v, MaxAgeSeconds)
		}
		c.MaximumEventAgeInSeconds = in.MaximumEventAgeInSeconds
	}
	if d := in.DestinationConfig; d != nil {
		if d.OnSuccess != nil {
			c.OnSuccess = ""
			if d.OnSuccess.Destination != nil {
				c.OnSuccess = *d.OnSuccess.Destination
			}
		}
		if d.OnFailure != nil {
			c.OnFailure = ""
			if d.OnFailure.Destination != nil {
				c.OnFailure = *d.OnFailure.Destination
			}
		}
	}
	if c.OnSuccess != "" {
		if err := s.checkDestination(ctx, fn.AccountID, fn.Role, "OnSuccess", c.OnSuccess); err != nil {
			return err
		}
	}
	if c.OnFailure != "" {
		if err := s.checkDestination(ctx, fn.AccountID, fn.Role, "OnFailure", c.OnFailure); err != nil {
			return err
		}
	}
	return nil
}

// Put replaces the config of a function (and qualifier).
func (s *Configs) Put(ctx context.Context, acct, region, name, qualifier string, in *Input) (*Config, error) {
	fn, q, err := s.target(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	c := &Config{AccountID: acct, Region: region, FunctionName: fn.FunctionName, Qualifier: q}
	if err := s.apply(ctx, fn, c, in); err != nil {
		return nil, err
	}
	c.LastModified = s.o.Now().UTC()
	if _, err := s.table.Put(ctx, key(acct, fn.FunctionName, q), c); err != nil {
		return nil, err
	}
	return c, nil
}

// Update changes the fields given of an existing config.
func (s *Configs) Update(ctx context.Context, acct, region, name, qualifier string, in *Input) (*Config, error) {
	fn, q, err := s.target(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	out, _, err := s.table.Update(ctx, key(acct, fn.FunctionName, q), func(c *Config) error {
		if err := s.apply(ctx, fn, c, in); err != nil {
			return err
		}
		c.LastModified = s.o.Now().UTC()
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, s.missing(acct, region, fn.FunctionName, q)
	}
	return out, err
}

func (s *Configs) missing(acct, region, fn, q string) error {
	return control.NotFound("The function %s doesn't have an EventInvokeConfig", control.QualifiedARN(region, acct, fn, q))
}

// Get returns the config of a function (and qualifier).
func (s *Configs) Get(ctx context.Context, acct, region, name, qualifier string) (*Config, error) {
	fn, q, err := s.target(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	c, _, err := s.table.Get(ctx, key(acct, fn.FunctionName, q))
	if errors.Is(err, store.ErrNotFound) {
		return nil, s.missing(acct, region, fn.FunctionName, q)
	}
	return c, err
}

// Delete removes the config of a function (and qualifier).
func (s *Configs) Delete(ctx context.Context, acct, region, name, qualifier string) error {
	fn, q, err := s.target(acct, region, name, qualifier)
	if err != nil {
		return err
	}
	if _, _, err := s.table.Get(ctx, key(acct, fn.FunctionName, q)); errors.Is(err, store.ErrNotFound) {
		return s.missing(acct, region, fn.FunctionName, q)
	}
	return s.table.Delete(ctx, key(acct, fn.FunctionName, q))
}

// List returns a function's configs (every qualifier), paged by marker.
func (s *Configs) List(ctx context.Context, acct, region, name, marker string, maxItems int) ([]*Config, string, error) {
	ref, err := control.ParseRef(name)
	if err != nil {
		return nil, "", err
	}
	if ref.Qualifier != "" {
		return nil, "", control.InvalidParam("ListFunctionEventInvokeConfigs takes an unqualified function name, not %s", name)
	}
	if _, _, err := s.target(acct, region, ref.Name, ""); err != nil {
		return nil, "", err
	}
	if maxItems <= 0 || maxItems > 50 {
		maxItems = 50
	}
	entries, err := s.table.List(ctx, acct+"."+ref.Name+".*")
	if err != nil {
		return nil, "", err
	}
	var all []*Config
	for _, e := range entries {
		all = append(all, e.Value)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Qualifier < all[j].Qualifier })
	start := 0
	if marker != "" {
		start = sort.Search(len(all), func(i int) bool { return all[i].Qualifier > marker })
	}
	end := min(start+maxItems, len(all))
	next := ""
	if end < len(all) {
		next = all[end-1].Qualifier
	}
	return all[start:end], next, nil
}

// Limits returns the retry and age limits of an Event invocation of the
// function as invoked (qualifier "" is $LATEST): its config's, or Lambda's
// defaults.
func (s *Configs) Limits(ctx context.Context, acct, fn, qualifier string) (retries int, maxAge time.Duration) {
	retries, maxAge = DefaultRetries, DefaultMaxAge
	c := s.lookup(ctx, acct, fn, qualifier)
	if c == nil {
		return
	}
	if c.MaximumRetryAttempts != nil {
		retries = *c.MaximumRetryAttempts
	}
	if c.MaximumEventAgeInSeconds != nil {
		maxAge = time.Duration(*c.MaximumEventAgeInSeconds) * time.Second
	}
	return
}

func (s *Configs) lookup(ctx context.Context, acct, fn, qualifier string) *Config {
	if qualifier == "" {
		qualifier = control.LatestVersion
	}
	c, _, err := s.table.Get(ctx, key(acct, fn, qualifier))
	if err != nil {
		return nil
	}
	return c
}

// Forget removes the configs of a deleted function (qualifier "": every
// one) or of one deleted version.
func (s *Configs) Forget(ctx context.Context, acct, fn, qualifier string) {
	if qualifier != "" {
		_ = s.table.Delete(ctx, key(acct, fn, qualifier))
		return
	}
	entries, err := s.table.List(ctx, acct+"."+fn+".*")
	if err != nil {
		s.o.Logger.Warn("removing a deleted function's event invoke configs failed", "function", fn, "err", err)
		return
	}
	for _, e := range entries {
		_ = s.table.Delete(ctx, e.Key)
	}
}
