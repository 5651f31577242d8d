package sqs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FloorResult is raw JetStream's rate on this store: what the queue
// engine's paths can at best approach.
type FloorResult struct {
	// Publish: messages/s stored by asynchronous publishes in batches of
	// ten with one acknowledgement wait per batch (SendMessageBatch's
	// path; on a single server each acknowledged after the store's group
	// sync, internal/store/groupcommit.go).
	Publish float64
	// PublishAtomic: messages/s stored as JetStream atomic batches of ten
	// (for comparison: JetStream stages each batch in files of its own).
	PublishAtomic float64
	// Consume: messages/s fetched ten at a time from a pull consumer and
	// acknowledged with a reply each (ReceiveMessage + DeleteMessageBatch's
	// path, without HTTP, SigV4 or encoding).
	Consume float64
}

// Floor measures raw JetStream publish and consume rates with msgs
// messages of size bytes on workers goroutines, on a private subject of
// the queue stream (removed afterwards).
func (q *Queues) Floor(ctx context.Context, msgs, workers, size int) (FloorResult, error) {
	var res FloorResult
	subj := "sqs.floor" + newID() + ".m"
	body := make([]byte, size)
	for i := range body {
		body[i] = 'x'
	}
	var next atomic.Int64
	var firstErr error
	var errMu sync.Mutex
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := int(next.Add(10))
				if n-10 >= msgs {
					return
				}
				futs := make([]jetstream.PubAckFuture, 0, 10)
				for i := 0; i < 10 && n-10+i < msgs; i++ {
					f, err := q.js.PublishMsgAsync(&nats.Msg{Subject: subj, Data: body})
					if err != nil {
						fail(err)
						return
					}
					futs = append(futs, f)
				}
				for _, f := range futs {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						fail(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	res.Publish = float64(msgs) / time.Since(t0).Seconds()
	if firstErr != nil {
		return res, firstErr
	}
	next.Store(0)
	t0 = time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := int(next.Add(10))
				if n-10 >= msgs {
					return
				}
				batch := make([]*nats.Msg, 0, 10)
				for i := 0; i < 10 && n-10+i < msgs; i++ {
					batch = append(batch, &nats.Msg{Subject: subj, Header: nats.Header{}, Data: body})
				}
				if err := q.publishAtomic(ctx, batch); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	res.PublishAtomic = float64(msgs) / time.Since(t0).Seconds()
	if firstErr != nil {
		return res, firstErr
	}
	msgs *= 2
	name := "F_" + newID()
	c, err := q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, FilterSubject: subj, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Minute, MaxAckPending: 120000, MaxWaiting: 8192})
	if err != nil {
		return res, err
	}
	defer func() {
		_ = q.stream.DeleteConsumer(context.Background(), name)
		_ = q.stream.Purge(context.Background(), jetstream.WithPurgeSubject(subj))
	}()
	var got atomic.Int64
	t0 = time.Now()
	deadline := t0.Add(2 * time.Minute)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got.Load() < int64(msgs) && time.Now().Before(deadline) && ctx.Err() == nil {
				b, err := c.Fetch(10, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					fail(err)
					return
				}
				var acks []*nats.Msg
				for m := range b.Messages() {
					acks = append(acks, &nats.Msg{Subject: m.Reply(), Data: []byte("+ACK")})
				}
				var aw sync.WaitGroup
				for _, a := range acks {
					aw.Add(1)
					go func() {
						defer aw.Done()
						rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						defer cancel()
						if _, err := q.nc.RequestWithContext(rctx, a.Subject, a.Data); err != nil {
							fail(err)
						}
					}()
				}
				aw.Wait()
				got.Add(int64(len(acks)))
			}
		}()
	}
	wg.Wait()
	res.Consume = float64(got.Load()) / time.Since(t0).Seconds()
	if firstErr != nil {
		return res, firstErr
	}
	if got.Load() < int64(msgs) {
		return res, errors.New(fmt.Sprint("floor: consumed ", got.Load(), " of ", msgs, " in 2 minutes"))
	}
	return res, nil
}
