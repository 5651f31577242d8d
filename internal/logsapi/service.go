package logsapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// TargetPrefix is the X-Amz-Target prefix of CloudWatch Logs operations.
const TargetPrefix = "Logs_20140328."

// Functions tells which functions write to which log groups.
type Functions interface {
	LogGroupFunctions(acct string) map[string][]control.GroupFunction
}

// Options configures the service.
type Options struct {
	Store     *store.Store
	Logs      *logs.Store
	Functions Functions
	Logger    *slog.Logger
	Now       func() time.Time
	// PurgeInterval is how often the lease holder removes records past
	// their group's retention (default 1 minute).
	PurgeInterval time.Duration
	// Holder names this server in the purge lease (default: random).
	Holder string
}

// Service is the CloudWatch Logs service (api.Service "logs").
type Service struct {
	o      Options
	log    *slog.Logger
	groups *store.Table[group]
	ops    map[string]func(*call) error
	lease  *lease
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the log-group bucket and starts the retention purge loop.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PurgeInterval <= 0 {
		o.PurgeInterval = time.Minute
	}
	if o.Holder == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.Holder = hex.EncodeToString(b[:])
	}
	s := &Service{o: o, log: o.Logger}
	var err error
	if s.groups, err = store.NewTable[group](ctx, o.Store, "loggroups"); err != nil {
		return nil, err
	}
	if s.lease, err = newLease(ctx, o.Store, "logs_retention_lease", "purger", o.Holder, 3*o.PurgeInterval); err != nil {
		return nil, err
	}
	s.ops = map[string]func(*call) error{
		"DescribeLogGroups":     s.describeLogGroups,
		"DescribeLogStreams":    s.describeLogStreams,
		"GetLogEvents":          s.getLogEvents,
		"FilterLogEvents":       s.filterLogEvents,
		"CreateLogGroup":        s.createLogGroup,
		"DeleteLogGroup":        s.deleteLogGroup,
		"PutRetentionPolicy":    s.putRetention,
		"DeleteRetentionPolicy": s.deleteRetention,
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.wg.Add(1)
	go s.purgeLoop(lctx)
	return s, nil
}

// Close stops the purge loop and gives up the lease.
func (s *Service) Close() {
	s.stop()
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.lease.release(ctx)
}

// Name is the SigV4 service name.
func (s *Service) Name() string { return "logs" }

// Operations names the operations served (the request metric's labels).
func (s *Service) Operations() []string {
	out := make([]string, 0, len(s.ops))
	for op := range s.ops {
		out = append(out, op)
	}
	return out
}

// WriteError writes an authentication or front-end error.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, newRequestID(), err)
}

type call struct {
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	id    auth.Identity
	body  []byte
	reqID string
}

func (c *call) region() string {
	if c.id.Region == "" {
		return "us-east-1"
	}
	return c.id.Region
}

// ServeAWS dispatches on X-Amz-Target.
func (s *Service) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	c := &call{w: w, r: r, ctx: r.Context(), id: id, body: body, reqID: newRequestID()}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, TargetPrefix)
	if !ok {
		writeError(w, c.reqID, &Error{Code: "UnknownOperationException", Message: fmt.Sprintf("CloudWatch Logs requests name their operation in X-Amz-Target as %s<Operation>; got %q", TargetPrefix, target)})
		return
	}
	f := s.ops[op]
	if f == nil {
		writeError(w, c.reqID, &Error{Code: "UnknownOperationException", Message: fmt.Sprintf("lambdaplane does not serve the CloudWatch Logs operation %s; it serves %s", op, strings.Join(sortedKeys(s.ops), ", "))})
		return
	}
	if err := f(c); err != nil {
		writeError(w, c.reqID, err)
	}
}

// decode reads the JSON request body into v.
func (c *call) decode(v any) error {
	if len(strings.TrimSpace(string(c.body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return &Error{Code: "SerializationException", Message: fmt.Sprintf("Could not parse the request body as JSON: %v", err)}
	}
	return nil
}

func (c *call) reply(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/x-amz-json-1.1")
	h.Set("X-Amzn-RequestId", c.reqID)
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(b)
	return nil
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
