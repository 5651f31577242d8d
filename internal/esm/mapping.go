package esm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// Mapping states, as Lambda names them.
const (
	StateCreating  = "Creating"
	StateEnabled   = "Enabled"
	StateEnabling  = "Enabling"
	StateUpdating  = "Updating"
	StateDisabling = "Disabling"
	StateDisabled  = "Disabled"
	StateDeleting  = "Deleting"
)

// ReportBatchItemFailures is the one FunctionResponseType of SQS mappings.
const ReportBatchItemFailures = "ReportBatchItemFailures"

// Limits of SQS mappings.
const (
	DefaultBatchSize      = 10
	MaxBatchSize          = 10000
	MaxBatchingWindow     = 300
	MinMaximumConcurrency = 2
	MaxMaximumConcurrency = 1000
)

// sqsActions are what the function's execution role must be allowed on
// the queue (the managed AWSLambdaSQSQueueExecutionRole allows them).
var sqsActions = []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}

// Mapping is one event source mapping record.
type Mapping struct {
	UUID                           string    `json:"UUID"`
	AccountID                      string    `json:"AccountID"`
	Region                         string    `json:"Region"`
	EventSourceArn                 string    `json:"EventSourceArn"`
	FunctionName                   string    `json:"FunctionName"`
	Qualifier                      string    `json:"Qualifier,omitempty"`
	BatchSize                      int       `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int       `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string  `json:"FunctionResponseTypes,omitempty"`
	MaximumConcurrency             int       `json:"MaximumConcurrency,omitempty"`
	Filters                        []string  `json:"Filters,omitempty"`
	Enabled                        bool      `json:"Enabled"` // desired
	State                          string    `json:"State"`
	StateTransitionReason          string    `json:"StateTransitionReason"`
	LastModified                   time.Time `json:"LastModified"`
	LastProcessingResult           string    `json:"LastProcessingResult"`
}

// FunctionArn is the mapped function's ARN (qualified when the mapping
// names a version or alias).
func (m *Mapping) FunctionArn() string {
	return control.QualifiedARN(m.Region, m.AccountID, m.FunctionName, m.Qualifier)
}

// ReportsItemFailures reports whether the function returns batchItemFailures.
func (m *Mapping) ReportsItemFailures() bool {
	for _, t := range m.FunctionResponseTypes {
		if t == ReportBatchItemFailures {
			return true
		}
	}
	return false
}

// ScalingConfig is the mapping's ScalingConfig.
type ScalingConfig struct {
	MaximumConcurrency *int `json:"MaximumConcurrency"`
}

// FilterCriteria is the mapping's FilterCriteria.
type FilterCriteria struct {
	Filters []struct {
		Pattern *string `json:"Pattern"`
	} `json:"Filters"`
}

// CreateInput is CreateEventSourceMapping's request.
type CreateInput struct {
	EventSourceArn                 string          `json:"EventSourceArn"`
	FunctionName                   string          `json:"FunctionName"`
	Enabled                        *bool           `json:"Enabled"`
	BatchSize                      *int            `json:"BatchSize"`
	MaximumBatchingWindowInSeconds *int            `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string        `json:"FunctionResponseTypes"`
	ScalingConfig                  *ScalingConfig  `json:"ScalingConfig"`
	FilterCriteria                 *FilterCriteria `json:"FilterCriteria"`
	StartingPosition               *string         `json:"StartingPosition"`
	ParallelizationFactor          *int            `json:"ParallelizationFactor"`
	MaximumRetryAttempts           *int            `json:"MaximumRetryAttempts"`
	MaximumRecordAgeInSeconds      *int            `json:"MaximumRecordAgeInSeconds"`
	BisectBatchOnFunctionError     *bool           `json:"BisectBatchOnFunctionError"`
	TumblingWindowInSeconds        *int            `json:"TumblingWindowInSeconds"`
}

// UpdateInput is UpdateEventSourceMapping's request.
type UpdateInput struct {
	FunctionName                   *string         `json:"FunctionName"`
	Enabled                        *bool           `json:"Enabled"`
	BatchSize                      *int            `json:"BatchSize"`
	MaximumBatchingWindowInSeconds *int            `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          *[]string       `json:"FunctionResponseTypes"`
	ScalingConfig                  *ScalingConfig  `json:"ScalingConfig"`
	FilterCriteria                 *FilterCriteria `json:"FilterCriteria"`
	ParallelizationFactor          *int            `json:"ParallelizationFactor"`
	MaximumRetryAttempts           *int            `json:"MaximumRetryAttempts"`
	MaximumRecordAgeInSeconds      *int            `json:"MaximumRecordAgeInSeconds"`
	BisectBatchOnFunctionError     *bool           `json:"BisectBatchOnFunctionError"`
	TumblingWindowInSeconds        *int            `json:"TumblingWindowInSeconds"`
}

// Options wires a Service.
type Options struct {
	Store     *store.Store
	Queues    Queues
	Functions Functions
	Roles     Roles // nil: no execution-role checks (unit tests)
	Logger    *slog.Logger
	Now       func() time.Time
}

// Service is the mapping control plane.
type Service struct {
	o     Options
	log   *slog.Logger
	table *store.Table[Mapping]
}

// New opens the mappings bucket.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t, err := store.NewTable[Mapping](ctx, o.Store, "esm")
	if err != nil {
		return nil, err
	}
	return &Service{o: o, log: o.Logger, table: t}, nil
}

func key(acct, uuid string) string { return "m." + acct + "." + uuid }

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func invalid(format string, a ...any) error { return control.InvalidParam(format, a...) }

func validationErr(format string, a ...any) error {
	return &control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: " + fmt.Sprintf(format, a...)}
}

func notFound() error {
	return control.NotFound("The resource you requested does not exist.")
}

// parseQueueARN checks arn:aws:sqs:REGION:ACCOUNT:NAME.
func parseQueueARN(arn string) error {
	p := strings.Split(arn, ":")
	if len(p) != 6 || p[0] != "arn" || p[2] != "sqs" || p[3] == "" || p[4] == "" || p[5] == "" {
		if len(p) >= 3 && p[0] == "arn" && (p[2] == "kinesis" || p[2] == "dynamodb" || p[2] == "kafka" || p[2] == "mq") {
			return invalid("Unsupported event source %s: lambdaplane maps SQS queues only (arn:aws:sqs:REGION:ACCOUNT:NAME).", arn)
		}
		return invalid("Unrecognized event source %q, must be an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME).", arn)
	}
	return nil
}

// settings are the tunable fields, validated together.
type settings struct {
	batch, window, maxConc int
	responseTypes          []string
	filters                []string
}

func checkStreamOnly(startPos *string, par, retries, age *int, bisect *bool, tumbling *int) error {
	switch {
	case startPos != nil:
		return invalid("StartingPosition is not valid for an SQS event source: SQS mappings have no starting position.")
	case par != nil:
		return invalid("ParallelizationFactor is not valid for an SQS event source (Kinesis and DynamoDB streams only).")
	case retries != nil:
		return invalid("MaximumRetryAttempts is not valid for an SQS event source: set maxReceiveCount in the queue's RedrivePolicy.")
	case age != nil:
		return invalid("MaximumRecordAgeInSeconds is not valid for an SQS event source (Kinesis and DynamoDB streams only).")
	case bisect != nil:
		return invalid("BisectBatchOnFunctionError is not valid for an SQS event source (Kinesis and DynamoDB streams only).")
	case tumbling != nil:
		return invalid("TumblingWindowInSeconds is not valid for an SQS event source (Kinesis and DynamoDB streams only).")
	}
	return nil
}

func (st *settings) apply(batch, window *int, types []string, typesSet bool, sc *ScalingConfig, fc *FilterCriteria) error {
	if batch != nil {
		if *batch < 1 {
			return validationErr("Value '%d' at 'batchSize' failed to satisfy constraint: Member must have value greater than or equal to 1", *batch)
		}
		if *batch > MaxBatchSize {
			return validationErr("Value '%d' at 'batchSize' failed to satisfy constraint: Member must have value less than or equal to %d", *batch, MaxBatchSize)
		}
		st.batch = *batch
	}
	if window != nil {
		if *window < 0 || *window > MaxBatchingWindow {
			return validationErr("Value '%d' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value between 0 and %d", *window, MaxBatchingWindow)
		}
		st.window = *window
	}
	if typesSet {
		for _, t := range types {
			if t != ReportBatchItemFailures {
				return validationErr("Value '[%s]' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [ReportBatchItemFailures]]", strings.Join(types, ", "))
			}
		}
		if len(types) > 1 {
			types = types[:1]
		}
		st.responseTypes = append([]string(nil), types...)
	}
	if sc != nil {
		if sc.MaximumConcurrency == nil {
			st.maxConc = 0
		} else {
			n := *sc.MaximumConcurrency
			if n < MinMaximumConcurrency {
				return validationErr("Value '%d' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: Member must have value greater than or equal to %d", n, MinMaximumConcurrency)
			}
			if n > MaxMaximumConcurrency {
				return validationErr("Value '%d' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: Member must have value less than or equal to %d", n, MaxMaximumConcurrency)
			}
			st.maxConc = n
		}
	}
	if fc != nil {
		var pats []string
		for i, f := range fc.Filters {
			if f.Pattern == nil {
				return invalid("Invalid filter pattern definition: FilterCriteria.Filters[%d] has no Pattern.", i)
			}
			pats = append(pats, *f.Pattern)
		}
		if _, err := CompileFilters(pats); err != nil {
			return invalid("Invalid filter pattern definition: %v.", err)
		}
		st.filters = pats
	}
	if st.batch > 10 && st.window == 0 {
		return invalid("Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
	}
	return nil
}

// target resolves the mapped function and checks its role and timeout
// against the queue.
func (s *Service) target(ctx context.Context, acct, region, name, queueARN string) (control.Ref, *control.Config, error) {
	ref, err := control.ParseRef(name)
	if err != nil {
		return ref, nil, err
	}
	if ref.AccountID != "" && ref.AccountID != acct {
		return ref, nil, control.NotFound("Function not found: %s", name)
	}
	cfg, err := s.o.Functions.Resolve(acct, region, ref.Name, ref.Qualifier)
	if err != nil {
		return ref, nil, err
	}
	if s.o.Roles != nil {
		reqs := make([]iam.Request, len(sqsActions))
		for i, a := range sqsActions {
			reqs[i] = iam.Request{Action: a, Resource: queueARN}
		}
		ok, missing, err := s.o.Roles.RoleAllowsRequests(ctx, acct, cfg.Role, reqs)
		if err != nil || !ok {
			what := "ReceiveMessage"
			if len(missing) > 0 {
				what = strings.TrimPrefix(missing[0], "sqs:")
			}
			return ref, nil, invalid("The function execution role does not have permissions to call %s on SQS. Attach arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole to %s.", what, cfg.Role)
		}
	}
	vis, err := s.o.Queues.VisibilityTimeout(ctx, queueARN)
	if errors.Is(err, ErrNoQueue) {
		return ref, nil, invalid("Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue %s does not exist or you do not have access to it.", queueARN)
	}
	if err != nil {
		return ref, nil, err
	}
	if vis < time.Duration(cfg.Timeout)*time.Second {
		return ref, nil, invalid("Queue visibility timeout: %d seconds is less than Function timeout: %d seconds", int(vis/time.Second), cfg.Timeout)
	}
	// Another account's queue: its Policy must grant the role (or the
	// role's account) what a poller does (checked again while polling).
	if queueAccount(queueARN) != acct {
		missing, err := s.o.Queues.Refused(ctx, queueARN, acct, cfg.Role, sqsActions)
		if errors.Is(err, ErrNoQueue) {
			return ref, nil, invalid("Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue %s does not exist or you do not have access to it.", queueARN)
		}
		if err != nil {
			return ref, nil, err
		}
		if missing != "" {
			return ref, nil, invalid("The function execution role does not have permissions to call %s on SQS: the Policy of queue %s (account %s) does not grant %s to %s or its account.", strings.TrimPrefix(missing, "sqs:"), queueARN, queueAccount(queueARN), missing, cfg.Role)
		}
	}
	return ref, cfg, nil
}

// Create creates a mapping; it is returned Creating and becomes Enabled
// (or Disabled) as soon as a placer settles it.
func (s *Service) Create(ctx context.Context, acct, region string, in *CreateInput) (*Mapping, error) {
	if in.FunctionName == "" {
		return nil, validationErr("Value null at 'functionName' failed to satisfy constraint: Member must not be null")
	}
	if err := parseQueueARN(in.EventSourceArn); err != nil {
		return nil, err
	}
	if err := checkStreamOnly(in.StartingPosition, in.ParallelizationFactor, in.MaximumRetryAttempts, in.MaximumRecordAgeInSeconds, in.BisectBatchOnFunctionError, in.TumblingWindowInSeconds); err != nil {
		return nil, err
	}
	st := settings{batch: DefaultBatchSize}
	if err := st.apply(in.BatchSize, in.MaximumBatchingWindowInSeconds, in.FunctionResponseTypes, true, in.ScalingConfig, in.FilterCriteria); err != nil {
		return nil, err
	}
	ref, _, err := s.target(ctx, acct, region, in.FunctionName, in.EventSourceArn)
	if err != nil {
		return nil, err
	}
	m := &Mapping{
		UUID: newUUID(), AccountID: acct, Region: region, EventSourceArn: in.EventSourceArn,
		FunctionName: ref.Name, Qualifier: ref.Qualifier,
		BatchSize: st.batch, MaximumBatchingWindowInSeconds: st.window, FunctionResponseTypes: st.responseTypes,
		MaximumConcurrency: st.maxConc, Filters: st.filters,
		Enabled: in.Enabled == nil || *in.Enabled, State: StateCreating, StateTransitionReason: "USER_INITIATED",
		LastModified: s.o.Now().UTC(), LastProcessingResult: "No records processed",
	}
	// One mapping per queue and function: the claim's create decides
	// between concurrent creates (on any hosts); the listing also finds
	// mappings made before claims were.
	rev, err := s.claim(ctx, m)
	if err != nil {
		return nil, err
	}
	existing, err := s.table.List(ctx, "m."+acct+".*")
	if err != nil {
		s.unclaim(ctx, m, rev)
		return nil, err
	}
	for _, e := range existing {
		o := e.Value
		if o.EventSourceArn == m.EventSourceArn && o.FunctionArn() == m.FunctionArn() && o.State != StateDeleting {
			s.unclaim(ctx, m, rev)
			return nil, errDuplicate(m, o.UUID)
		}
	}
	if _, err := s.table.Create(ctx, key(acct, m.UUID), m); err != nil {
		s.unclaim(ctx, m, rev)
		return nil, err
	}
	s.log.Info("event source mapping created", "uuid", m.UUID, "queue", m.EventSourceArn, "function", m.FunctionArn())
	return m, nil
}

// Get returns one mapping of the account.
func (s *Service) Get(ctx context.Context, acct, uuid string) (*Mapping, error) {
	if uuid == "" || strings.ContainsAny(uuid, ".*> ") {
		return nil, notFound()
	}
	m, _, err := s.table.Get(ctx, key(acct, uuid))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound()
	}
	return m, err
}

// List returns the account's mappings (optionally of one queue and/or
// function), ordered by UUID, paged by marker (the last UUID returned).
func (s *Service) List(ctx context.Context, acct, region, queueARN, function, marker string, maxItems int) ([]*Mapping, string, error) {
	if maxItems <= 0 {
		maxItems = 100
	}
	var fnArn string
	if function != "" {
		ref, err := control.ParseRef(function)
		if err != nil {
			return nil, "", err
		}
		fnArn = control.QualifiedARN(region, acct, ref.Name, ref.Qualifier)
	}
	entries, err := s.table.List(ctx, "m."+acct+".*")
	if err != nil {
		return nil, "", err
	}
	var all []*Mapping
	for _, e := range entries {
		m := e.Value
		if queueARN != "" && m.EventSourceArn != queueARN {
			continue
		}
		if fnArn != "" && m.FunctionArn() != fnArn {
			continue
		}
		all = append(all, m)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].UUID < all[j].UUID })
	start := 0
	if marker != "" {
		start = sort.Search(len(all), func(i int) bool { return all[i].UUID > marker })
	}
	end := min(start+maxItems, len(all))
	next := ""
	if end < len(all) {
		next = all[end-1].UUID
	}
	return all[start:end], next, nil
}

// Update changes a mapping; it is returned Updating, Enabling or
// Disabling and settles to Enabled or Disabled.
func (s *Service) Update(ctx context.Context, acct, region, uuid string, in *UpdateInput) (*Mapping, error) {
	if err := checkStreamOnly(nil, in.ParallelizationFactor, in.MaximumRetryAttempts, in.MaximumRecordAgeInSeconds, in.BisectBatchOnFunctionError, in.TumblingWindowInSeconds); err != nil {
		return nil, err
	}
	cur, err := s.Get(ctx, acct, uuid)
	if err != nil {
		return nil, err
	}
	var ref *control.Ref
	var moved *Mapping // cur under its new function, claimed (claimRev)
	var claimRev uint64
	if in.FunctionName != nil {
		r, _, err := s.target(ctx, acct, region, *in.FunctionName, cur.EventSourceArn)
		if err != nil {
			return nil, err
		}
		ref = &r
		n := *cur
		n.FunctionName, n.Qualifier = r.Name, r.Qualifier
		if n.FunctionArn() != cur.FunctionArn() {
			if claimRev, err = s.claim(ctx, &n); err != nil {
				return nil, err
			}
			moved = &n
		}
	}
	var types []string
	if in.FunctionResponseTypes != nil {
		types = *in.FunctionResponseTypes
	}
	out, _, err := s.table.Update(ctx, key(acct, uuid), func(m *Mapping) error {
		switch m.State {
		case StateCreating, StateUpdating, StateEnabling, StateDisabling, StateDeleting:
			return &control.Error{Code: "ResourceInUseException", Status: 400, Message: fmt.Sprintf("Cannot update the event source mapping %s because it is in use (state %s); retry in a moment.", uuid, m.State)}
		}
		st := settings{batch: m.BatchSize, window: m.MaximumBatchingWindowInSeconds, maxConc: m.MaximumConcurrency,
			responseTypes: m.FunctionResponseTypes, filters: m.Filters}
		if err := st.apply(in.BatchSize, in.MaximumBatchingWindowInSeconds, types, in.FunctionResponseTypes != nil, in.ScalingConfig, in.FilterCriteria); err != nil {
			return err
		}
		m.BatchSize, m.MaximumBatchingWindowInSeconds, m.MaximumConcurrency = st.batch, st.window, st.maxConc
		m.FunctionResponseTypes, m.Filters = st.responseTypes, st.filters
		if ref != nil {
			m.FunctionName, m.Qualifier = ref.Name, ref.Qualifier
		}
		m.State = StateUpdating
		if in.Enabled != nil && *in.Enabled != m.Enabled {
			m.Enabled = *in.Enabled
			m.State = map[bool]string{true: StateEnabling, false: StateDisabling}[m.Enabled]
		}
		m.StateTransitionReason = "USER_INITIATED"
		m.LastModified = s.o.Now().UTC()
		return nil
	})
	if moved != nil {
		if err != nil {
			s.unclaim(ctx, moved, claimRev)
		} else {
			s.releaseClaim(ctx, cur)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound()
	}
	return out, err
}

// Delete marks a mapping Deleting (returned); its pollers stop and a
// placer removes the record.
func (s *Service) Delete(ctx context.Context, acct, uuid string) (*Mapping, error) {
	if _, err := s.Get(ctx, acct, uuid); err != nil {
		return nil, err
	}
	out, _, err := s.table.Update(ctx, key(acct, uuid), func(m *Mapping) error {
		m.State = StateDeleting
		m.StateTransitionReason = "USER_INITIATED"
		m.LastModified = s.o.Now().UTC()
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound()
	}
	return out, err
}

// settled is the state a transitional one settles to ("" = delete).
func settled(m *Mapping) (string, bool) {
	switch m.State {
	case StateCreating, StateUpdating, StateEnabling, StateDisabling:
		if m.Enabled {
			return StateEnabled, true
		}
		return StateDisabled, true
	case StateDeleting:
		return "", true
	}
	return m.State, false
}
