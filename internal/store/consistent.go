package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// On a replicated store every bucket a package opens (Store.Bucket, or
// JetStream().CreateOrUpdateKeyValue and the like) is a consistentKV:
//
//   - Reads are served by the bucket's stream leader ($JS.API.STREAM.MSG.GET),
//     not by whichever replica answers a direct get first. The leader stores
//     a message before it acknowledges it, so a read that follows a write —
//     through any host — sees it (read your writes); a direct get could be
//     answered by a replica still behind (a role created and not yet found
//     by the next call). While the stream has no leader (an election, when
//     no write can be acknowledged either) a read is served by a replica
//     after leaderReadWait, so reads do not stall with the writes.
//   - Writes carry a message id and are tried again while the stream elects
//     a leader (no responders, "temporarily unavailable", a timed-out ack).
//     The id makes a retry of a write that was in fact stored return the
//     first write's revision (the server deduplicates before it checks the
//     expected revision), so Create and Update stay exactly-once.
//   - A revision conflict is one error whatever the replica count: a
//     replicated stream reports it as 10164, a single one as 10071; both
//     come back as the 10071 API error wrapping ErrKeyRevisionMismatch (so
//     errors.Is(err, jetstream.ErrKeyExists) holds for Create as for one
//     server).
//
// Watches are the library's, started again while the cluster elects a
// meta leader (which creates their consumers); a watch is served by one
// replica (Table.List checks its listing against the leader). Listings of
// keys and history are the library's own.
type consistentKV struct {
	jetstream.KeyValue
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string // KV_<bucket>
	pre    string // $KV.<bucket>.
}

func newConsistentKV(kv jetstream.KeyValue, nc *nats.Conn, js jetstream.JetStream) *consistentKV {
	return &consistentKV{KeyValue: kv, nc: nc, js: js, stream: "KV_" + kv.Bucket(), pre: "$KV." + kv.Bucket() + "."}
}

// electionWait bounds the retries of one read or write while a stream
// elects (a SIGKILLed leader's replacement takes 5–9 s); the caller's
// deadline, when sooner, bounds them instead. attemptWait bounds one
// attempt: an attempt sent to a leader that has just died is never
// answered.
//
// A read waits for a leader at most leaderReadWait (attempts of
// leaderReadAttempt), and at most half of what is left of its caller's
// deadline: while the stream elects one, no write can be acknowledged
// either, and the read is served by a replica instead (the library's
// direct get), so reads do not stall with the writes.
const (
	electionWait      = 20 * time.Second
	attemptWait       = 3 * time.Second
	leaderReadWait    = 5 * time.Second
	leaderReadAttempt = 2 * time.Second
)

// through runs fn until it succeeds, fails for a reason other than an
// election, or the time is up (electionWait or ctx's deadline).
// ambiguous, when not nil, is set once an attempt ended without an answer
// (the write may have been stored).
func through[T any](ctx context.Context, ambiguous *bool, fn func(context.Context) (T, error)) (T, error) {
	return throughFor(ctx, electionWait, attemptWait, ambiguous, fn)
}

func throughFor[T any](ctx context.Context, total, each time.Duration, ambiguous *bool, fn func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(total)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, min(each, max(time.Until(deadline), time.Millisecond)))
		v, err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !electing(err) {
			return v, err
		}
		if ambiguous != nil && unanswered(err) {
			*ambiguous = true
		}
		if time.Until(deadline) < wait {
			return v, err
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

// electing: the stream (or the cluster's meta group) has no leader right
// now, or the one asked did not answer; another attempt may succeed.
func electing(err error) bool {
	if unanswered(err) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10008, // JetStream system temporarily unavailable
			10009, // not the leader
			10158: // the same message id is being stored (a retry overtook its first attempt)
			return true
		}
		return apiErr.Code == 503
	}
	return false
}

// unanswered: the attempt timed out (it may have been carried out).
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrAsyncPublishTimeout)
}

// wrongRevision: the write's expected revision was not the key's.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// conflict is the one form of a revision conflict (see consistentKV).
func conflict(err error) error {
	desc := "wrong last sequence"
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Description != "" {
		desc = apiErr.Description
	}
	return fmt.Errorf("%w: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: desc},
		jetstream.ErrKeyRevisionMismatch)
}

func validKey(key string) bool {
	return key != "" && !strings.ContainsAny(key, "*> \t\r\n") && key[0] != '.' && key[len(key)-1] != '.' && !strings.Contains(key, "..")
}

// storedMsg is the stream leader's answer to a message get.
type storedMsg struct {
	Subject string    `json:"subject"`
	Seq     uint64    `json:"seq"`
	Header  []byte    `json:"hdrs,omitempty"`
	Data    []byte    `json:"data,omitempty"`
	Time    time.Time `json:"time"`
}

// leaderGet asks the stream leader for the last message of subject (which
// may hold wildcards) or, when seq > 0, for message seq. A missing message
// is (nil, nil).
func (k *consistentKV) leaderGet(ctx context.Context, subject string, seq uint64) (*storedMsg, error) {
	req := struct {
		Seq     uint64 `json:"seq,omitempty"`
		LastFor string `json:"last_by_subj,omitempty"`
	}{Seq: seq}
	if seq == 0 {
		req.LastFor = subject
	}
	body, _ := json.Marshal(req)
	wait := leaderReadWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	return throughFor(ctx, wait, leaderReadAttempt, nil, func(ctx context.Context) (*storedMsg, error) {
		return k.askLeader(ctx, body)
	})
}

// askLeader sends one message get and waits for the stream leader's
// answer. Every server of the stream's group sees the request; one whose
// view of the cluster is behind answers "temporarily unavailable" (it
// sees no leader) at once, possibly before the leader answers: such
// answers are only taken when no other came in time.
func (k *consistentKV) askLeader(ctx context.Context, body []byte) (*storedMsg, error) {
	inbox := nats.NewInbox()
	sub, err := k.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := k.nc.PublishRequest("$JS.API.STREAM.MSG.GET."+k.stream, inbox, body); err != nil {
		return nil, err
	}
	var unavailable error
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if unavailable != nil {
				return nil, unavailable
			}
			return nil, err
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		var resp struct {
			Error   *jetstream.APIError `json:"error,omitempty"`
			Message *storedMsg          `json:"message,omitempty"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return nil, fmt.Errorf("read %s: %w", k.stream, err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrorCode == 10008:
			unavailable = resp.Error
			continue
		case resp.Error != nil && resp.Error.ErrorCode == 10037: // no message found
			return nil, nil
		case resp.Error != nil:
			return nil, resp.Error
		}
		return resp.Message, nil
	}
}

// entry reads key's newest message from the leader: nil when the key never
// existed (or was purged away); a delete or purge marker is returned with
// its operation.
func (k *consistentKV) entry(ctx context.Context, key string, seq uint64) (*kvEntry, error) {
	if !validKey(key) {
		return nil, jetstream.ErrInvalidKey
	}
	m, err := k.leaderGet(ctx, k.pre+key, seq)
	if err != nil || m == nil {
		return nil, err
	}
	if seq > 0 && m.Subject != k.pre+key {
		return nil, nil
	}
	e := &kvEntry{bucket: k.Bucket(), key: key, value: m.Data, revision: m.Seq, created: m.Time}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err == nil {
			switch h.Get("KV-Operation") {
			case "DEL":
				e.op = jetstream.KeyValueDelete
			case "PURGE":
				e.op = jetstream.KeyValuePurge
			}
			if e.op == jetstream.KeyValuePut {
				switch h.Get(jetstream.MarkerReasonHeader) {
				case "MaxAge", "Purge":
					e.op = jetstream.KeyValuePurge
				case "Remove":
					e.op = jetstream.KeyValueDelete
				}
			}
		}
	}
	return e, nil
}

// Get returns the newest value of key as its stream leader has it (a
// replica's while the stream has no leader).
func (k *consistentKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	return k.get(ctx, key, 0)
}

// GetRevision returns revision rev of key, from the stream leader (a
// replica while the stream has no leader).
func (k *consistentKV) GetRevision(ctx context.Context, key string, rev uint64) (jetstream.KeyValueEntry, error) {
	return k.get(ctx, key, rev)
}

func (k *consistentKV) get(ctx context.Context, key string, rev uint64) (jetstream.KeyValueEntry, error) {
	e, err := k.entry(ctx, key, rev)
	if err != nil && electing(err) && ctx.Err() == nil {
		if rev > 0 {
			return k.KeyValue.GetRevision(ctx, key, rev)
		}
		return k.KeyValue.Get(ctx, key)
	}
	if err != nil {
		return nil, err
	}
	if e == nil || e.op != jetstream.KeyValuePut {
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil
}

// lastRevision is the revision of the newest message whose key matches
// filter (a subject filter such as "fn.123.>"), 0 when none.
func (k *consistentKV) lastRevision(ctx context.Context, filter string) (uint64, error) {
	m, err := k.leaderGet(ctx, k.pre+filter, 0)
	if err != nil || m == nil {
		return 0, err
	}
	return m.Seq, nil
}

func msgID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "lp-" + hex.EncodeToString(b[:])
}

// publish stores one message for key; expect, when not nil, is the
// revision key must have (0: must not exist).
func (k *consistentKV) publish(ctx context.Context, key string, value []byte, expect *uint64) (uint64, error) {
	if !validKey(key) {
		return 0, jetstream.ErrInvalidKey
	}
	id := msgID()
	rev, err := through(ctx, nil, func(ctx context.Context) (uint64, error) {
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
		if expect != nil {
			opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
		}
		pa, err := k.js.PublishMsg(ctx, &nats.Msg{Subject: k.pre + key, Data: value}, opts...)
		if err != nil {
			return 0, err
		}
		return pa.Sequence, nil
	})
	if err != nil && wrongRevision(err) {
		return 0, conflict(err)
	}
	return rev, err
}

// Put writes key unconditionally.
func (k *consistentKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return k.publish(ctx, key, value, nil)
}

// PutString writes key unconditionally.
func (k *consistentKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	return k.Put(ctx, key, []byte(value))
}

// Create writes key if it does not exist or was deleted. Options (a TTL)
// are left to the library's Create.
func (k *consistentKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if len(opts) > 0 {
		return through(ctx, nil, func(ctx context.Context) (uint64, error) { return k.KeyValue.Create(ctx, key, value, opts...) })
	}
	zero := uint64(0)
	rev, err := k.publish(ctx, key, value, &zero)
	if err == nil || !wrongRevision(err) {
		return rev, err
	}
	// The key has messages: a delete or purge marker may be recreated over.
	e, gerr := k.entry(ctx, key, 0)
	if gerr == nil && e != nil && e.op != jetstream.KeyValuePut {
		last := e.revision
		return k.publish(ctx, key, value, &last)
	}
	return 0, err
}

// Update writes key if its revision is still rev.
func (k *consistentKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	return k.publish(ctx, key, value, &rev)
}

// Delete places a delete marker (the library's, tried through an
// election). A revision conflict after an attempt that went unanswered is
// success when the key is gone: that attempt was stored.
func (k *consistentKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return k.remove(ctx, key, k.KeyValue.Delete, opts)
}

// Purge places a purge marker and removes the key's older revisions.
func (k *consistentKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return k.remove(ctx, key, k.KeyValue.Purge, opts)
}

func (k *consistentKV) remove(ctx context.Context, key string, fn func(context.Context, string, ...jetstream.KVDeleteOpt) error, opts []jetstream.KVDeleteOpt) error {
	var ambiguous bool
	_, err := through(ctx, &ambiguous, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx, key, opts...) })
	if err == nil || !wrongRevision(err) {
		return err
	}
	if ambiguous {
		if e, gerr := k.entry(ctx, key, 0); gerr == nil && (e == nil || e.op != jetstream.KeyValuePut) {
			return nil
		}
	}
	return conflict(err)
}

// kvEntry is a KeyValueEntry read from the stream leader.
type kvEntry struct {
	bucket, key string
	value       []byte
	revision    uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e *kvEntry) Bucket() string                  { return e.bucket }
func (e *kvEntry) Key() string                     { return e.key }
func (e *kvEntry) Value() []byte                   { return e.value }
func (e *kvEntry) Revision() uint64                { return e.revision }
func (e *kvEntry) Created() time.Time              { return e.created }
func (e *kvEntry) Delta() uint64                   { return 0 }
func (e *kvEntry) Operation() jetstream.KeyValueOp { return e.op }

// Watch starts a watch (the library's), tried again while the cluster
// elects the meta leader that creates its consumer (up to electionWait).
// Each attempt gets ctx itself, which also ends the watch.
func (k *consistentKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return watchThrough(ctx, func() (jetstream.KeyWatcher, error) { return k.KeyValue.Watch(ctx, keys, opts...) })
}

// WatchAll is Watch of every key.
func (k *consistentKV) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return watchThrough(ctx, func() (jetstream.KeyWatcher, error) { return k.KeyValue.WatchAll(ctx, opts...) })
}

// WatchFiltered is Watch of several key filters.
func (k *consistentKV) WatchFiltered(ctx context.Context, keys []string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return watchThrough(ctx, func() (jetstream.KeyWatcher, error) { return k.KeyValue.WatchFiltered(ctx, keys, opts...) })
}

func watchThrough(ctx context.Context, start func() (jetstream.KeyWatcher, error)) (jetstream.KeyWatcher, error) {
	deadline := time.Now().Add(electionWait)
	for {
		w, err := start()
		if err == nil || ctx.Err() != nil || !electing(err) || time.Now().After(deadline) {
			return w, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
