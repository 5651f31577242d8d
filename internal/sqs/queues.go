package sqs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	queuesBucket = "sqs_queues"
	fifoBucket   = "sqs_fifo"
	firstBucket  = "sqs_first_receive"
	// deletedBucket remembers deleted queues for deletedWait
	// (QueueDeletedRecently), key "<account>.<name>", value the deletion
	// time in Unix milliseconds.
	deletedBucket = "sqs_deleted"
	// deletedWait is how long a deleted queue's name stays unusable.
	deletedWait = 60 * time.Second
	streamName  = "SQS"
	// dedupWindow is FIFO deduplication's interval.
	dedupWindow = 5 * time.Minute
	// purgeInterval is how often a queue may be purged.
	purgeInterval = 60 * time.Second
)

// Config configures New.
type Config struct {
	Store  *store.Store
	Region string
	Logger *slog.Logger
	Now    func() time.Time
}

// Queue is a queue's record.
type Queue struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	Name    string `json:"name"`
	Region  string `json:"region"`
	// Attributes holds the attributes set (defaults are not stored).
	Attributes map[string]string `json:"attributes,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Created    time.Time         `json:"created"`
	Modified   time.Time         `json:"modified"`
	LastPurge  time.Time         `json:"lastPurge,omitzero"`
	Fifo       bool              `json:"fifo,omitempty"`
}

// ARN is the queue's ARN, arn:aws:sqs:<region>:<account>:<name>.
func (q *Queue) ARN() string { return "arn:aws:sqs:" + q.Region + ":" + q.Account + ":" + q.Name }

// URL is the queue's URL on the endpoint host (host[:port]).
func (q *Queue) URL(host string) string { return "http://" + host + "/" + q.Account + "/" + q.Name }

// Attr is an attribute's value, or its default.
func (q *Queue) Attr(name string) string {
	if v, ok := q.Attributes[name]; ok {
		return v
	}
	return attrDefaults[name]
}

// VisibilityTimeout is the queue's default visibility timeout.
func (q *Queue) VisibilityTimeout() time.Duration {
	return time.Duration(atoiDefault(q.Attributes, "VisibilityTimeout")) * time.Second
}

// Delay is the queue's DelaySeconds.
func (q *Queue) Delay() time.Duration {
	return time.Duration(atoiDefault(q.Attributes, "DelaySeconds")) * time.Second
}

// WaitTime is the queue's ReceiveMessageWaitTimeSeconds.
func (q *Queue) WaitTime() time.Duration {
	return time.Duration(atoiDefault(q.Attributes, "ReceiveMessageWaitTimeSeconds")) * time.Second
}

// MaxMessageSize is the queue's MaximumMessageSize in bytes.
func (q *Queue) MaxMessageSize() int { return atoiDefault(q.Attributes, "MaximumMessageSize") }

// Retention is the queue's MessageRetentionPeriod.
func (q *Queue) Retention() time.Duration {
	return time.Duration(atoiDefault(q.Attributes, "MessageRetentionPeriod")) * time.Second
}

// Redrive is the queue's RedrivePolicy, nil when it has none.
func (q *Queue) Redrive() *RedrivePolicy {
	v := q.Attributes["RedrivePolicy"]
	if v == "" {
		return nil
	}
	var p RedrivePolicy
	if json.Unmarshal([]byte(v), &p) != nil {
		return nil
	}
	return &p
}

// Policy is the queue's resource policy document ("" when none).
func (q *Queue) Policy() string { return q.Attributes["Policy"] }

// ContentBasedDeduplication reports the FIFO attribute.
func (q *Queue) ContentBasedDeduplication() bool {
	return q.Attributes["ContentBasedDeduplication"] == "true"
}

func (q *Queue) consumerName() string { return "Q_" + q.ID }
func (q *Queue) subjMain() string     { return "sqs." + q.ID + ".m" }
func (q *Queue) subjDelayed() string  { return "sqs." + q.ID + ".d" }
func (q *Queue) subjGroups() string   { return "sqs." + q.ID + ".g" }
func (q *Queue) subjAll() string      { return "sqs." + q.ID + ".>" }

func queueKey(account, name string) string { return account + "." + name }

// ParseARN splits arn:aws:sqs:<region>:<account>:<name>.
func ParseARN(arn string) (region, account, name string, err error) {
	p := strings.Split(arn, ":")
	if len(p) != 6 || p[0] != "arn" || p[2] != "sqs" || p[4] == "" || p[5] == "" {
		return "", "", "", errf(KindInvalidParameterValue, "%q is not a queue ARN (arn:aws:sqs:<region>:<account>:<name>).", arn)
	}
	return p[3], p[4], p[5], nil
}

// Queues is the queue engine.
type Queues struct {
	st      *store.Store
	js      jetstream.JetStream
	nc      *nats.Conn
	stream  jetstream.Stream
	queues  *store.Table[Queue]
	fifo    *store.Table[groupState]
	first   jetstream.KeyValue
	firsts  *firstReceives
	deleted jetstream.KeyValue
	region  string
	log     *slog.Logger
	now     func() time.Time
	mu      sync.RWMutex
	cache   map[string]*Queue // key -> record (watched)
	byID    map[string]*Queue
	cons    map[string]jetstream.Consumer // queue id -> consumer handle
	watchMu sync.Mutex
	stop    context.CancelFunc
}

// New opens the queue engine's buckets and stream and starts watching the
// queue records.
func New(ctx context.Context, cfg Config) (*Queues, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	q := &Queues{st: cfg.Store, js: cfg.Store.JetStream(), nc: cfg.Store.Conn(), region: cfg.Region, log: cfg.Logger.With("component", "sqs"), now: cfg.Now,
		cache: map[string]*Queue{}, byID: map[string]*Queue{}, cons: map[string]jetstream.Consumer{}}
	var err error
	if q.queues, err = store.NewTable[Queue](ctx, cfg.Store, queuesBucket); err != nil {
		return nil, err
	}
	if q.fifo, err = store.NewTable[groupState](ctx, cfg.Store, fifoBucket); err != nil {
		return nil, err
	}
	if q.first, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: firstBucket, History: 1, Storage: jetstream.FileStorage, TTL: 15 * 24 * time.Hour, Replicas: cfg.Store.Replicas(),
	}); err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", firstBucket, err)
	}
	if q.deleted, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: deletedBucket, History: 1, Storage: jetstream.FileStorage, TTL: deletedWait + 5*time.Second, Replicas: cfg.Store.Replicas(),
	}); err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", deletedBucket, err)
	}
	if q.stream, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: streamName, Subjects: []string{"sqs.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: cfg.Store.Replicas(), Duplicates: dedupWindow,
		AllowMsgTTL: true, AllowMsgSchedules: true, AllowDirect: true, MaxMsgSize: 1 << 20,
		AllowAtomicPublish: true,
	}); err != nil {
		return nil, fmt.Errorf("open the queue stream %s: %w", streamName, err)
	}
	q.firsts = newFirstReceives(q)
	wctx, cancel := context.WithCancel(context.Background())
	q.stop = cancel
	if err := q.watch(ctx, wctx); err != nil {
		cancel()
		q.firsts.close()
		return nil, err
	}
	return q, nil
}

// Close stops the watch and writes the first receives not yet written.
func (q *Queues) Close() {
	if q.stop != nil {
		q.stop()
	}
	if q.firsts != nil {
		q.firsts.close()
	}
}

// watch keeps the cache of queue records; it returns once the initial
// values are in.
func (q *Queues) watch(ctx, wctx context.Context) error {
	w, err := q.queues.KV().WatchAll(wctx)
	if err != nil {
		return fmt.Errorf("watch queues: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		defer w.Stop()
		once := sync.Once{}
		for {
			select {
			case <-wctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					once.Do(func() { close(ready) })
					continue
				}
				q.apply(e)
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *Queues) apply(e jetstream.KeyValueEntry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.cache[e.Key()]; ok {
		delete(q.byID, old.ID)
	}
	if e.Operation() != jetstream.KeyValuePut {
		if old, ok := q.cache[e.Key()]; ok {
			delete(q.cons, old.ID)
		}
		delete(q.cache, e.Key())
		return
	}
	var rec Queue
	if json.Unmarshal(e.Value(), &rec) != nil {
		return
	}
	q.cache[e.Key()] = &rec
	q.byID[rec.ID] = &rec
}

func (q *Queues) remember(rec *Queue) {
	q.mu.Lock()
	q.cache[queueKey(rec.Account, rec.Name)] = rec
	q.byID[rec.ID] = rec
	q.mu.Unlock()
}

func (q *Queues) forget(rec *Queue) {
	q.mu.Lock()
	delete(q.cache, queueKey(rec.Account, rec.Name))
	delete(q.byID, rec.ID)
	delete(q.cons, rec.ID)
	q.mu.Unlock()
}

// Get returns the queue account/name (a copy), QueueDoesNotExist if none.
func (q *Queues) Get(ctx context.Context, account, name string) (*Queue, error) {
	q.mu.RLock()
	rec, ok := q.cache[queueKey(account, name)]
	q.mu.RUnlock()
	if ok {
		c := *rec
		return &c, nil
	}
	if account == "" || name == "" || strings.ContainsAny(account+name, " *>\t") {
		return nil, errNoQueue()
	}
	// Not in the cache yet (created on another host a moment ago).
	r, _, err := q.queues.Get(ctx, queueKey(account, name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoQueue()
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Lookup returns the queue an ARN names.
func (q *Queues) Lookup(ctx context.Context, arn string) (*Queue, error) {
	_, acct, name, err := ParseARN(arn)
	if err != nil {
		return nil, err
	}
	return q.Get(ctx, acct, name)
}

// CreateInput is CreateQueue's input.
type CreateInput struct {
	Account    string
	Name       string
	Attributes map[string]string
	Tags       map[string]string
}

// Create creates a queue, or returns the existing one when it has the
// same attributes (QueueNameExists when one differs).
func (q *Queues) Create(ctx context.Context, in CreateInput) (*Queue, error) {
	fifo := false
	if v, ok := in.Attributes["FifoQueue"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, errInvalidValue("FifoQueue")
		}
		fifo = b
	}
	if in.Name == "" {
		return nil, errf(KindMissingParameter, "The request must contain the parameter QueueName.")
	}
	if err := validName(in.Name, fifo); err != nil {
		return nil, err
	}
	attrs, err := validateAttributes(in.Attributes, fifo, true)
	if err != nil {
		return nil, err
	}
	if err := validateTags(in.Tags); err != nil {
		return nil, err
	}
	if err := q.checkRedrive(ctx, in.Account, in.Name, fifo, attrs); err != nil {
		return nil, err
	}
	if existing, err := q.Get(ctx, in.Account, in.Name); err == nil {
		if existing.Fifo != fifo {
			return nil, errf(KindQueueNameExists, "A queue already exists with the same name and a different value for attribute FifoQueue")
		}
		for k, v := range attrs {
			if existing.Attr(k) != v {
				return nil, errf(KindQueueNameExists, "A queue already exists with the same name and a different value for attribute %s", k)
			}
		}
		return existing, nil
	}
	if err := q.checkDeletedRecently(ctx, in.Account, in.Name); err != nil {
		return nil, err
	}
	now := q.now().UTC().Truncate(time.Second)
	rec := &Queue{ID: newID(), Account: in.Account, Name: in.Name, Region: q.region, Attributes: attrs, Tags: in.Tags, Created: now, Modified: now, Fifo: fifo}
	if len(rec.Attributes) == 0 {
		rec.Attributes = nil
	}
	if !fifo {
		if err := q.ensureConsumer(ctx, rec); err != nil {
			return nil, err
		}
	}
	if _, err := q.queues.Create(ctx, queueKey(in.Account, in.Name), rec); err != nil {
		if errors.Is(err, store.ErrExists) {
			// Another request created it a moment ago: compare with it.
			q.dropConsumer(ctx, rec)
			return q.Create(ctx, in)
		}
		return nil, err
	}
	q.remember(rec)
	q.log.Info("queue created", "account", in.Account, "queue", in.Name, "fifo", fifo)
	return rec, nil
}

func (q *Queues) ensureConsumer(ctx context.Context, rec *Queue) error {
	c, err := q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: rec.consumerName(), FilterSubject: rec.subjMain(), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: max(rec.VisibilityTimeout(), time.Second), MaxAckPending: 120000, MaxWaiting: 8192,
		MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy, Replicas: q.st.Replicas(),
	})
	if err != nil {
		return fmt.Errorf("create the consumer of queue %s: %w", rec.Name, err)
	}
	q.mu.Lock()
	q.cons[rec.ID] = c
	q.mu.Unlock()
	return nil
}

func (q *Queues) dropConsumer(ctx context.Context, rec *Queue) {
	if err := q.stream.DeleteConsumer(ctx, rec.consumerName()); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		q.log.Warn("deleting a queue's consumer", "queue", rec.Name, "err", err)
	}
}

// consumer returns the cached consumer handle of a standard queue.
func (q *Queues) consumer(ctx context.Context, rec *Queue) (jetstream.Consumer, error) {
	q.mu.RLock()
	c, ok := q.cons[rec.ID]
	q.mu.RUnlock()
	if ok {
		return c, nil
	}
	c, err := q.stream.Consumer(ctx, rec.consumerName())
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, errNoQueue()
	}
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.cons[rec.ID] = c
	q.mu.Unlock()
	return c, nil
}

// checkRedrive validates a RedrivePolicy against its dead-letter queue.
func (q *Queues) checkRedrive(ctx context.Context, account, name string, fifo bool, attrs map[string]string) error {
	v := attrs["RedrivePolicy"]
	if v == "" {
		return nil
	}
	p, _ := parseRedrive(v)
	dlq, err := q.Lookup(ctx, p.DeadLetterTargetArn)
	if err != nil {
		return errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", v)
	}
	if dlq.Fifo != fifo {
		return errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source.", v)
	}
	if dlq.Account != account {
		return errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Dead-letter target owner should be same as the source.", v)
	}
	if !redriveAllowed(dlq, "arn:aws:sqs:"+q.region+":"+account+":"+name) {
		return errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Queue %s does not allow this queue to use it as its dead-letter queue (RedriveAllowPolicy).", v, p.DeadLetterTargetArn)
	}
	return nil
}

func redriveAllowed(dlq *Queue, source string) bool {
	v := dlq.Attributes["RedriveAllowPolicy"]
	if v == "" {
		return true
	}
	var p RedriveAllowPolicy
	if json.Unmarshal([]byte(v), &p) != nil {
		return true
	}
	switch p.RedrivePermission {
	case "denyAll":
		return false
	case "byQueue":
		return slices.Contains(p.SourceQueueArns, source)
	}
	return true
}

// DeleteQueue deletes a queue and its messages.
func (q *Queues) DeleteQueue(ctx context.Context, account, name string) error {
	rec, err := q.Get(ctx, account, name)
	if err != nil {
		return err
	}
	if err := q.queues.Delete(ctx, queueKey(account, name)); err != nil {
		return err
	}
	q.forget(rec)
	// Remembered for QueueDeletedRecently; a failure only lets the name
	// be taken again sooner.
	stamp := strconv.FormatInt(q.now().UnixMilli(), 10)
	if _, err := q.deleted.Put(ctx, queueKey(account, name), []byte(stamp)); err != nil {
		q.log.Warn("recording a deleted queue", "queue", name, "err", err)
	}
	q.dropConsumer(ctx, rec)
	if err := q.stream.Purge(ctx, jetstream.WithPurgeSubject(rec.subjAll())); err != nil {
		q.log.Warn("purging a deleted queue's messages", "queue", name, "err", err)
	}
	if rec.Fifo {
		q.dropGroups(ctx, rec)
	}
	q.log.Info("queue deleted", "account", account, "queue", name)
	return nil
}

// checkDeletedRecently refuses a name whose queue was deleted less than
// deletedWait ago (SQS: QueueDeletedRecently).
func (q *Queues) checkDeletedRecently(ctx context.Context, account, name string) error {
	e, err := q.deleted.Get(ctx, queueKey(account, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ms, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil || q.now().Sub(time.UnixMilli(ms)) >= deletedWait {
		return nil
	}
	return errf(KindQueueDeletedRecently, "You must wait 60 seconds after deleting a queue before you can create another with the same name.")
}

// List lists an account's queues whose names start with prefix, by name.
func (q *Queues) List(ctx context.Context, account, prefix string) ([]*Queue, error) {
	q.mu.RLock()
	var out []*Queue
	for _, rec := range q.cache {
		if rec.Account == account && strings.HasPrefix(rec.Name, prefix) {
			c := *rec
			out = append(out, &c)
		}
	}
	q.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Queue) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetAttributes changes a queue's attributes.
func (q *Queues) SetAttributes(ctx context.Context, account, name string, attrs map[string]string) error {
	rec, err := q.Get(ctx, account, name)
	if err != nil {
		return err
	}
	if _, ok := attrs["FifoQueue"]; ok {
		return errf(KindInvalidAttributeName, "Unknown Attribute FifoQueue.")
	}
	norm, err := validateAttributes(attrs, rec.Fifo, false)
	if err != nil {
		return err
	}
	if err := q.checkRedrive(ctx, account, name, rec.Fifo, norm); err != nil {
		return err
	}
	updated, _, err := q.queues.Update(ctx, queueKey(account, name), func(v *Queue) error {
		if v.Attributes == nil {
			v.Attributes = map[string]string{}
		}
		for k, val := range norm {
			if val == "" && (k == "RedrivePolicy" || k == "RedriveAllowPolicy" || k == "Policy") {
				delete(v.Attributes, k)
				continue
			}
			v.Attributes[k] = val
		}
		v.Modified = q.now().UTC().Truncate(time.Second)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNoQueue()
	}
	if err != nil {
		return err
	}
	q.remember(updated)
	if _, ok := norm["VisibilityTimeout"]; ok && !updated.Fifo {
		if err := q.ensureConsumer(ctx, updated); err != nil {
			return err
		}
	}
	return nil
}

// Attributes returns the named attributes ("All": every one), computed
// ones included.
func (q *Queues) Attributes(ctx context.Context, rec *Queue, names []string) (map[string]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		if !KnownAttribute(n) {
			return nil, errf(KindInvalidAttributeName, "Unknown Attribute %s.", n)
		}
		if n == "All" {
			for _, a := range AllAttributeNames() {
				want[a] = true
			}
			continue
		}
		want[n] = true
	}
	out := map[string]string{}
	for k := range want {
		switch k {
		case "QueueArn":
			out[k] = rec.ARN()
		case "CreatedTimestamp":
			out[k] = strconv.FormatInt(rec.Created.Unix(), 10)
		case "LastModifiedTimestamp":
			out[k] = strconv.FormatInt(rec.Modified.Unix(), 10)
		case "FifoQueue":
			if rec.Fifo {
				out[k] = "true"
			}
		case "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed":
		case "ContentBasedDeduplication":
			if rec.Fifo {
				out[k] = strconv.FormatBool(rec.ContentBasedDeduplication())
			}
		case "DeduplicationScope":
			if rec.Fifo {
				out[k] = cmpOr(rec.Attributes[k], "queue")
			}
		case "FifoThroughputLimit":
			if rec.Fifo {
				out[k] = cmpOr(rec.Attributes[k], "perQueue")
			}
		default:
			if v := rec.Attr(k); v != "" {
				out[k] = v
			}
		}
	}
	if want["ApproximateNumberOfMessages"] || want["ApproximateNumberOfMessagesNotVisible"] || want["ApproximateNumberOfMessagesDelayed"] {
		c, err := q.Counts(ctx, rec)
		if err != nil {
			return nil, err
		}
		if want["ApproximateNumberOfMessages"] {
			out["ApproximateNumberOfMessages"] = strconv.Itoa(c.Visible)
		}
		if want["ApproximateNumberOfMessagesNotVisible"] {
			out["ApproximateNumberOfMessagesNotVisible"] = strconv.Itoa(c.NotVisible)
		}
		if want["ApproximateNumberOfMessagesDelayed"] {
			out["ApproximateNumberOfMessagesDelayed"] = strconv.Itoa(c.Delayed)
		}
	}
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Counts are a queue's approximate message counts.
type Counts struct{ Visible, NotVisible, Delayed int }

// Counts reads a queue's approximate counts.
func (q *Queues) Counts(ctx context.Context, rec *Queue) (Counts, error) {
	var c Counts
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(rec.subjAll()))
	if err != nil {
		return c, err
	}
	total := 0
	for subj, n := range info.State.Subjects {
		switch {
		case strings.HasPrefix(subj, rec.subjDelayed()+"."):
			c.Delayed += int(n)
		default:
			total += int(n)
		}
	}
	if rec.Fifo {
		inflight, delayed, err := q.fifoCounts(ctx, rec)
		if err != nil {
			return c, err
		}
		c.NotVisible = inflight
		c.Delayed += delayed
		c.Visible = max(0, total-inflight-delayed)
		return c, nil
	}
	cons, err := q.consumer(ctx, rec)
	if err != nil {
		return c, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return c, err
	}
	c.NotVisible = ci.NumAckPending
	c.Visible = max(0, total-c.NotVisible)
	return c, nil
}

// Tag adds or replaces tags.
func (q *Queues) Tag(ctx context.Context, account, name string, tags map[string]string) error {
	if err := validateTags(tags); err != nil {
		return err
	}
	return q.updateTags(ctx, account, name, func(t map[string]string) error {
		maps.Copy(t, tags)
		if len(t) > 50 {
			return errf(KindInvalidParameterValue, "Too many tags added for queue %s (at most 50).", name)
		}
		return nil
	})
}

// Untag removes tag keys.
func (q *Queues) Untag(ctx context.Context, account, name string, keys []string) error {
	return q.updateTags(ctx, account, name, func(t map[string]string) error {
		for _, k := range keys {
			delete(t, k)
		}
		return nil
	})
}

func (q *Queues) updateTags(ctx context.Context, account, name string, fn func(map[string]string) error) error {
	if _, err := q.Get(ctx, account, name); err != nil {
		return err
	}
	updated, _, err := q.queues.Update(ctx, queueKey(account, name), func(v *Queue) error {
		if v.Tags == nil {
			v.Tags = map[string]string{}
		}
		return fn(v.Tags)
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNoQueue()
	}
	if err != nil {
		return err
	}
	q.remember(updated)
	return nil
}

func validateTags(tags map[string]string) error {
	if len(tags) > 50 {
		return errf(KindInvalidParameterValue, "Too many tags (at most 50 per queue).")
	}
	for k, v := range tags {
		if k == "" || len(k) > 128 {
			return errf(KindInvalidParameterValue, "Tag key %q must be 1 to 128 characters.", k)
		}
		if len(v) > 256 {
			return errf(KindInvalidParameterValue, "The value of tag %q must be at most 256 characters.", k)
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return errf(KindInvalidParameterValue, "Tag key %q may not start with aws: (reserved).", k)
		}
	}
	return nil
}

// DeadLetterSources lists the account's queues whose RedrivePolicy names
// the queue.
func (q *Queues) DeadLetterSources(ctx context.Context, rec *Queue) []*Queue {
	all, _ := q.List(ctx, rec.Account, "")
	var out []*Queue
	for _, s := range all {
		if p := s.Redrive(); p != nil && p.DeadLetterTargetArn == rec.ARN() {
			out = append(out, s)
		}
	}
	return out
}

// Purge deletes every message of a queue (PurgeQueueInProgress within 60
// seconds of the last purge).
func (q *Queues) Purge(ctx context.Context, account, name string) error {
	rec, err := q.Get(ctx, account, name)
	if err != nil {
		return err
	}
	now := q.now()
	updated, _, err := q.queues.Update(ctx, queueKey(account, name), func(v *Queue) error {
		if !v.LastPurge.IsZero() && now.Sub(v.LastPurge) < purgeInterval {
			return errf(KindPurgeQueueInProgress, "Only one PurgeQueue operation on %s is allowed every 60 seconds.", name)
		}
		v.LastPurge = now
		return nil
	})
	if err != nil {
		return err
	}
	q.remember(updated)
	if err := q.stream.Purge(ctx, jetstream.WithPurgeSubject(rec.subjAll())); err != nil {
		return fmt.Errorf("purge queue %s: %w", name, err)
	}
	if rec.Fifo {
		q.dropGroups(ctx, rec)
	}
	return nil
}

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
