package logs

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stored is a record with its place in the stream: the sequence of the
// message that holds it and its index among that message's records (a
// stable position: the Logs API's event ids and paging tokens), and the
// time the stream stored the message.
type Stored struct {
	Record
	Seq    uint64
	Index  int
	Stored time.Time
}

// ScanFrom says where a Scan starts: at a stream sequence (a paging
// token), else at the first message stored at or after Since (a record is
// always stored after its own time, so no record of Since or later is
// skipped), else at the oldest stored record.
type ScanFrom struct {
	Seq   uint64
	Since time.Time
}

// Scan calls fn, in stored order, for the function's records stored when
// Scan was called (those still in the flush delay are stored first), from
// where says, until fn returns false. Records of one message come in
// their order; the messages in stream order.
func (s *Store) Scan(ctx context.Context, acct, fnName string, from ScanFrom, fn func(Stored) bool) error {
	subj := subject(acct, fnName)
	s.mu.Lock()
	frames, ok := s.pending[subj]
	delete(s.pending, subj)
	s.mu.Unlock()
	if ok {
		if err := s.publishWait(subj, frames); err != nil {
			return err
		}
	}
	last, err := s.st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case from.Seq > 0:
		if from.Seq > last.Sequence {
			return nil
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from.Seq
	case !from.Since.IsZero():
		if last.Time.Before(from.Since) {
			return nil
		}
		t := from.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	c, err := s.st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	left := info.NumPending
	for left > 0 {
		n := int(min(left, 256))
		msgs, err := c.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range msgs.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			if meta.Sequence.Stream > last.Sequence {
				left = 0
				continue
			}
			recs, err := decode(m)
			if err != nil {
				return err
			}
			for i, r := range recs {
				if !fn(Stored{Record: r, Seq: meta.Sequence.Stream, Index: i, Stored: meta.Timestamp}) {
					return nil
				}
			}
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if got == 0 { // purged meanwhile
			return nil
		}
		if uint64(got) >= left {
			left = 0
		} else {
			left -= uint64(got)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// Usage is the bytes the function's stored records take (as accounted for
// the quota).
func (s *Store) Usage(acct, fnName string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn, _ := s.ledger.usage(subject(acct, fnName))
	return fn
}

// PurgeBefore removes the function's records stored before t (a log
// group's retention): every message the stream stored before t. It is
// idempotent and safe on any host at any time: what is stored meanwhile
// has a later sequence and stays.
func (s *Store) PurgeBefore(ctx context.Context, acct, fnName string, t time.Time) error {
	subj := subject(acct, fnName)
	c, err := s.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t, HeadersOnly: true})
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	var below uint64
	if info.NumPending == 0 {
		// Nothing stored since t: everything goes.
		last, err := s.st.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !last.Time.Before(t) {
			return nil // stored just now
		}
		below = last.Sequence + 1
	} else {
		m, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		below = meta.Sequence.Stream
	}
	if err := s.st.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(below)); err != nil {
		return err
	}
	s.mu.Lock()
	s.ledger.dropBelow(subj, below)
	s.mu.Unlock()
	return nil
}

// dropBelow forgets the runs of subj whose messages are all below seq
// (purged); a run only partly below stays accounted whole, so the ledger
// errs on the side of the quota.
func (l *ledger) dropBelow(subj string, seq uint64) {
	u := l.subjects[subj]
	if u == nil {
		return
	}
	if u.last < seq {
		l.remove(subj)
		return
	}
	for len(u.runs) > 1 && u.runs[1].first <= seq {
		u.dropRun()
	}
}
