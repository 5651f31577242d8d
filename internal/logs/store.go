package logs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits of the log stream: per function and overall.
const (
	streamName        = "LOGS"
	maxPerFunction    = 10000     // messages (one per invocation or init chunk)
	maxStreamBytes    = 512 << 20 // whole stream
	maxMessageBytes   = 256 << 10 // one invocation's log, truncated beyond
	HeaderVersion     = "Lp-Version"
	HeaderLogStream   = "Lp-Log-Stream"
	HeaderRequestID   = "Lp-Request-Id"
	truncationWarning = "\n[lambdaplane: log output truncated]\n"
)

// Store keeps log records in a JetStream stream, one subject per function.
type Store struct {
	js jetstream.JetStream
	st jetstream.Stream
}

// Record is one stored log chunk.
type Record struct {
	Seq       uint64
	Time      time.Time
	Version   string
	LogStream string
	RequestID string
	Text      []byte
}

// NewStore opens (creating if needed) the log stream.
func NewStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              streamName,
		Subjects:          []string{"logs.>"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: maxPerFunction,
		MaxBytes:          maxStreamBytes,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("open log stream: %w", err)
	}
	return &Store{js: js, st: st}, nil
}

func subject(acct, fn string) string { return "logs." + acct + "." + fn }

// Append stores one chunk without waiting for the acknowledgement.
func (s *Store) Append(acct, fn string, r Record) error {
	if len(r.Text) == 0 {
		return nil
	}
	text := r.Text
	if len(text) > maxMessageBytes {
		text = append(append([]byte{}, text[:maxMessageBytes]...), truncationWarning...)
	}
	m := nats.NewMsg(subject(acct, fn))
	m.Data = text
	m.Header.Set(HeaderVersion, r.Version)
	m.Header.Set(HeaderLogStream, r.LogStream)
	if r.RequestID != "" {
		m.Header.Set(HeaderRequestID, r.RequestID)
	}
	_, err := s.js.PublishMsgAsync(m)
	return err
}

// Purge deletes a function's logs (when the function is deleted).
func (s *Store) Purge(ctx context.Context, acct, fn string) error {
	return s.st.Purge(ctx, jetstream.WithPurgeSubject(subject(acct, fn)))
}

// Follow calls fn for every stored record of the function (the last `tail`
// ones when tail > 0), then, if follow, for new ones until ctx ends.
func (s *Store) Follow(ctx context.Context, acct, fnName string, tail int, follow bool, fn func(Record) error) error {
	subj := subject(acct, fnName)
	info, err := s.st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return err
	}
	pending := info.State.Subjects[subj]
	var skip uint64
	if tail > 0 && pending > uint64(tail) {
		skip = pending - uint64(tail)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy}
	return s.consume(ctx, cfg, skip, pending, follow, fn)
}

func (s *Store) consume(ctx context.Context, cfg jetstream.OrderedConsumerConfig, skip, pending uint64, follow bool, fn func(Record) error) error {
	c, err := s.st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	var seen uint64
	for {
		if !follow && seen >= pending {
			return nil
		}
		wait := time.Second
		msgs, err := c.Fetch(100, jetstream.FetchMaxWait(wait))
		if err != nil {
			if errors.Is(err, context.Canceled) || ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		got := 0
		for m := range msgs.Messages() {
			got++
			seen++
			if seen <= skip {
				continue
			}
			meta, _ := m.Metadata()
			r := Record{Text: m.Data(), Version: m.Headers().Get(HeaderVersion), LogStream: m.Headers().Get(HeaderLogStream), RequestID: m.Headers().Get(HeaderRequestID)}
			if meta != nil {
				r.Seq, r.Time = meta.Sequence.Stream, meta.Timestamp
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if got == 0 && !follow {
			return nil
		}
	}
}
