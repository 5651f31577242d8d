package sqs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// groupState is a FIFO message group's receive state, one KV record per
// group written with compare-and-swap.
type groupState struct {
	// Inflight is the group's in-flight batch; the group gives out no
	// message while one of these is invisible.
	Inflight []inflight `json:"inflight,omitempty"`
	// Counts holds the receive counts of the group's messages by stream
	// sequence, First their first receive (Unix ms).
	Counts map[uint64]int   `json:"counts,omitempty"`
	First  map[uint64]int64 `json:"first,omitempty"`
}

type inflight struct {
	Seq       uint64    `json:"seq"`
	Token     string    `json:"token"`
	VisibleAt time.Time `json:"visibleAt"`
}

func (g *groupState) blocked(now time.Time) bool {
	for _, f := range g.Inflight {
		if f.VisibleAt.After(now) {
			return true
		}
	}
	return false
}

func (q *Queues) receiveFifo(ctx context.Context, rec *Queue, o ReceiveOptions) ([]Message, error) {
	out, err := q.fifoAttempt(ctx, rec, o)
	if err != nil || len(out) > 0 || o.Wait <= 0 {
		return out, err
	}
	wake := make(chan struct{}, 1)
	sub, err := q.nc.Subscribe(rec.subjGroups()+".>", func(*nats.Msg) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	deadline := time.NewTimer(o.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond) // visibility and delays ending
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return q.fifoAttempt(ctx, rec, o)
		case <-wake:
		case <-tick.C:
		}
		out, err := q.fifoAttempt(ctx, rec, o)
		if err != nil || len(out) > 0 {
			return out, err
		}
	}
}

// fifoAttempt takes what it can from the groups that have no message in
// flight, oldest group order first.
func (q *Queues) fifoAttempt(ctx context.Context, rec *Queue, o ReceiveOptions) ([]Message, error) {
	prefix := rec.subjGroups() + "."
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(prefix+"*"))
	if err != nil {
		return nil, err
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for s := range info.State.Subjects {
		subjects = append(subjects, s)
	}
	slices.Sort(subjects)
	if n := len(subjects); n > 1 {
		k := rand.IntN(n)
		subjects = append(subjects[k:], subjects[:k]...)
	}
	redrive := rec.Redrive()
	var out []Message
	for _, subj := range subjects {
		if len(out) >= o.Max {
			break
		}
		key := rec.ID + "." + strings.TrimPrefix(subj, prefix)
		gs, rev, err := q.fifo.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			gs, rev, err = &groupState{}, 0, nil
		}
		if err != nil {
			return nil, err
		}
		now := q.now()
		if gs.blocked(now) {
			continue
		}
		if gs.Counts == nil {
			gs.Counts = map[uint64]int{}
		}
		if gs.First == nil {
			gs.First = map[uint64]int64{}
		}
		var got []Message
		var moves []*jetstream.RawStreamMsg
		next := uint64(1)
		for len(out)+len(got) < o.Max {
			m, err := q.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subj))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, err
			}
			next = m.Sequence + 1
			if due, _ := strconv.ParseInt(m.Header.Get(hDue), 10, 64); due > now.UnixMilli() {
				break
			}
			cnt := gs.Counts[m.Sequence] + 1
			if redrive != nil && cnt > redrive.MaxReceiveCount {
				moves = append(moves, m)
				delete(gs.Counts, m.Sequence)
				delete(gs.First, m.Sequence)
				continue
			}
			gs.Counts[m.Sequence] = cnt
			if _, ok := gs.First[m.Sequence]; !ok {
				gs.First[m.Sequence] = now.UnixMilli()
			}
			msg := decode(m.Header, m.Data)
			msg.Sequence = m.Sequence
			msg.Attributes["ApproximateReceiveCount"] = strconv.Itoa(cnt)
			msg.Attributes["ApproximateFirstReceiveTimestamp"] = strconv.FormatInt(gs.First[m.Sequence], 10)
			msg.Attributes["SequenceNumber"] = fmt.Sprintf("%020d", m.Sequence)
			got = append(got, msg)
		}
		if len(got) == 0 && len(moves) == 0 {
			continue
		}
		gs.Inflight = gs.Inflight[:0]
		for i := range got {
			tok := newID()
			gs.Inflight = append(gs.Inflight, inflight{Seq: got[i].Sequence, Token: tok, VisibleAt: now.Add(o.Visibility)})
			got[i].ReceiptHandle = encodeHandle("f", rec.ID, strings.TrimPrefix(subj, prefix)+"|"+strconv.FormatUint(got[i].Sequence, 10)+"|"+tok)
		}
		if rev == 0 {
			_, err = q.fifo.Create(ctx, key, gs)
		} else {
			_, err = q.fifo.UpdateAt(ctx, key, gs, rev)
		}
		if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict) {
			continue // another receiver took the group
		}
		if err != nil {
			return nil, err
		}
		for _, m := range moves {
			if err := q.moveToDLQ(ctx, rec, redrive, m.Header, m.Data); err != nil {
				q.log.Warn("moving a message to its dead-letter queue", "queue", rec.Name, "err", err)
				continue
			}
			_ = q.stream.DeleteMsg(ctx, m.Sequence)
		}
		out = append(out, got...)
	}
	return out, nil
}

// fifoRef splits a FIFO receipt reference: hex group, sequence, token.
func fifoRef(rec *Queue, ref string) (key string, seq uint64, token string, err error) {
	p := strings.Split(ref, "|")
	if len(p) != 3 {
		return "", 0, "", errf(KindReceiptHandleIsInvalid, "The input receipt handle is not a valid receipt handle.")
	}
	if _, err := hex.DecodeString(p[0]); err != nil {
		return "", 0, "", errf(KindReceiptHandleIsInvalid, "The input receipt handle is not a valid receipt handle.")
	}
	seq, err = strconv.ParseUint(p[1], 10, 64)
	if err != nil {
		return "", 0, "", errf(KindReceiptHandleIsInvalid, "The input receipt handle is not a valid receipt handle.")
	}
	return rec.ID + "." + p[0], seq, p[2], nil
}

func (q *Queues) deleteFifo(ctx context.Context, rec *Queue, ref string) error {
	key, seq, _, err := fifoRef(rec, ref)
	if err != nil {
		return err
	}
	if err := q.stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !strings.Contains(err.Error(), "no message found") {
		return fmt.Errorf("delete the message: %w", err)
	}
	_, _, err = q.fifo.Update(ctx, key, func(g *groupState) error {
		g.Inflight = slices.DeleteFunc(g.Inflight, func(f inflight) bool { return f.Seq == seq })
		delete(g.Counts, seq)
		delete(g.First, seq)
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func (q *Queues) changeFifo(ctx context.Context, rec *Queue, ref string, d time.Duration) error {
	key, seq, token, err := fifoRef(rec, ref)
	if err != nil {
		return err
	}
	now := q.now()
	_, _, err = q.fifo.Update(ctx, key, func(g *groupState) error {
		for i := range g.Inflight {
			if g.Inflight[i].Seq == seq && g.Inflight[i].Token == token && g.Inflight[i].VisibleAt.After(now) {
				g.Inflight[i].VisibleAt = now.Add(d)
				return nil
			}
		}
		return errf(KindMessageNotInflight, "Message does not exist or is not available for visibility timeout change.")
	})
	if errors.Is(err, store.ErrNotFound) {
		return errf(KindMessageNotInflight, "Message does not exist or is not available for visibility timeout change.")
	}
	return err
}

// fifoCounts counts a FIFO queue's in-flight and delayed messages.
func (q *Queues) fifoCounts(ctx context.Context, rec *Queue) (inflightN, delayed int, err error) {
	groups, err := q.fifo.List(ctx, rec.ID+".>")
	if err != nil {
		return 0, 0, err
	}
	now := q.now()
	for _, g := range groups {
		for _, f := range g.Value.Inflight {
			if f.VisibleAt.After(now) {
				inflightN++
			}
		}
	}
	return inflightN, 0, nil
}

func (q *Queues) dropGroups(ctx context.Context, rec *Queue) {
	groups, err := q.fifo.List(ctx, rec.ID+".>")
	if err != nil {
		q.log.Warn("listing a FIFO queue's groups", "queue", rec.Name, "err", err)
		return
	}
	for _, g := range groups {
		_ = q.fifo.Delete(ctx, g.Key)
	}
}
