package logs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits of one stored record and message; what is kept per function and
// account is the Quota's.
const (
	streamName        = "LOGS"
	maxMessageBytes   = 256 << 10 // one record (invocation or init chunk), truncated beyond
	maxBatchBytes     = 512 << 10 // one message; below NATS's 1 MB payload limit
	HeaderVersion     = "Lp-Version"
	HeaderLogStream   = "Lp-Log-Stream"
	HeaderRequestID   = "Lp-Request-Id"
	headerFormat      = "Lp-Format"
	formatFrames      = "frames1"
	truncationWarning = "\n[lambdaplane: log output truncated]\n"
)

// DefaultFlushDelay is how long Append collects a function's records
// before storing them as one message.
const DefaultFlushDelay = 20 * time.Millisecond

// Store keeps log records in a JetStream stream, one subject per function.
// Records are batched: those a function produces within FlushDelay are
// stored as one message, so a warm invoke costs the store a few
// microseconds instead of a publish. A crash loses at most the last
// FlushDelay of log output; Close stores what is pending.
//
// What is kept is bounded per function and per account (Quota): the store
// accounts every message the stream acknowledged and purges a function's
// oldest messages when the function, or its account, is over its quota.
type Store struct {
	js    jetstream.JetStream
	st    jetstream.Stream
	delay time.Duration

	mu      sync.Mutex
	pending map[string][]byte // subject → encoded frames
	closed  bool
	kick    chan struct{}
	quit    chan struct{}
	done    chan struct{}

	ledger     *ledger       // guarded by mu
	acks       chan pubAck   // published messages, to account once stored
	keeperDone chan struct{} // the keeper accounted everything published before Close
	abandon    chan struct{} // Close's context ended: stop waiting for acknowledgements
}

// pubAck is a published message waiting for its acknowledgement.
type pubAck struct {
	subj   string
	size   int64
	fut    jetstream.PubAckFuture
	stored chan error // nil, or told whether the message was stored (AppendNow)
	purge  bool       // not a message: Purge of subj, after every earlier message is settled
}

// Options configures a Store.
type Options struct {
	FlushDelay time.Duration // <= 0: DefaultFlushDelay
	Quota      Quota         // zero fields: the defaults
}

// Record is one stored log chunk.
type Record struct {
	Time      time.Time
	Version   string
	LogStream string
	RequestID string
	Text      []byte
}

// NewStore opens (creating or updating if needed) the log stream and
// accounts what it already holds, trimming what is over the quota.
func NewStore(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if err := o.Quota.Defaults(); err != nil {
		return nil, err
	}
	// No stream-wide byte limit: with DiscardOld it would evict the oldest
	// records of whichever function wrote them, however little it wrote.
	// The per-function message limit is JetStream's own; bytes are bounded
	// by the ledger (per function, per account).
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              streamName,
		Subjects:          []string{"logs.>"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: int64(o.Quota.FunctionMsgs),
		MaxBytes:          -1,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("open log stream: %w", err)
	}
	if o.FlushDelay <= 0 {
		o.FlushDelay = DefaultFlushDelay
	}
	s := &Store{js: js, st: st, delay: o.FlushDelay, pending: map[string][]byte{},
		kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		ledger: newLedger(o.Quota), acks: make(chan pubAck, 1<<14), keeperDone: make(chan struct{}), abandon: make(chan struct{})}
	if err := s.load(ctx); err != nil {
		return nil, fmt.Errorf("account stored logs: %w", err)
	}
	go s.flusher()
	go s.keeper()
	return s, nil
}

// load accounts the messages already stored (their headers only).
func (s *Store) load(ctx context.Context) error {
	info, err := s.st.Info(ctx)
	if err != nil {
		return err
	}
	total := info.State.Msgs
	if total == 0 {
		return nil
	}
	c, err := s.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"logs.>"}, HeadersOnly: true})
	if err != nil {
		return err
	}
	trims := map[string]uint64{}
	defer func() { s.purge(ctx, trims) }()
	for seen := uint64(0); seen < total; {
		msgs, err := c.Fetch(int(min(total-seen, 1000)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range msgs.Messages() {
			got++
			size, _ := strconv.ParseInt(m.Headers().Get(nats.MsgSize), 10, 64)
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			for subj, below := range s.account(m.Subject(), size, meta.Sequence.Stream) {
				trims[subj] = max(trims[subj], below)
			}
		}
		if got == 0 { // purged meanwhile: nothing more to read
			break
		}
		seen += uint64(got)
	}
	return nil
}

// account enters one stored message into the ledger; it returns the
// trims that calls for (subject → purge below this sequence).
func (s *Store) account(subj string, dataLen int64, seq uint64) map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ledger.add(subj, dataLen+msgOverhead, seq)
}

// purge carries out trims.
func (s *Store) purge(ctx context.Context, trims map[string]uint64) {
	for subj, below := range trims {
		_ = s.st.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(below))
	}
}

// keeper accounts each published message once the stream acknowledged it
// (with its sequence) and carries out the trims that calls for. After the
// flusher's last flush (Close) it accounts what is left and returns.
func (s *Store) keeper() {
	defer close(s.keeperDone)
	t := time.NewTimer(0)
	t.Stop()
	for {
		select {
		case a := <-s.acks:
			s.settle(a, t)
		case <-s.done:
			for {
				select {
				case a := <-s.acks:
					s.settle(a, t)
				default:
					return
				}
			}
		}
	}
}

// settle waits (bounded) for one message's acknowledgement and accounts it;
// a message the stream refused or never acknowledged is not stored.
func (s *Store) settle(a pubAck, t *time.Timer) {
	t.Reset(30 * time.Second)
	defer t.Stop()
	tell := func(err error) { // AppendNow and Purge wait for this
		if a.stored != nil {
			a.stored <- err
		}
	}
	if a.purge {
		tell(s.purgeSubject(a.subj))
		return
	}
	select {
	case ack := <-a.fut.Ok():
		tell(nil)
		if trims := s.account(a.subj, a.size, ack.Sequence); len(trims) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.purge(ctx, trims)
			cancel()
		}
	case err := <-a.fut.Err():
		tell(err)
	case <-t.C:
		tell(errNoAck)
	case <-s.abandon:
		tell(errors.New("log store: closed before the acknowledgement"))
	}
}

func subject(acct, fn string) string { return "logs." + acct + "." + fn }

// Append queues one record; it is stored within the flush delay.
func (s *Store) Append(acct, fn string, r Record) error {
	return s.add(acct, fn, r, false)
}

// AppendNow stores the record, with the function's pending ones, at once
// and returns once the stream acknowledged it (an error if it did not):
// for the log of an Event invoke, which is the invoke's only output; the
// event is acknowledged only after its log is stored.
func (s *Store) AppendNow(acct, fn string, r Record) error {
	return s.add(acct, fn, r, true)
}

func (s *Store) add(acct, fn string, r Record, now bool) error {
	if len(r.Text) == 0 {
		return nil
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if len(r.Text) > maxMessageBytes {
		r.Text = append(append([]byte{}, r.Text[:maxMessageBytes]...), truncationWarning...)
	}
	subj := subject(acct, fn)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("log store closed")
	}
	buf := s.pending[subj]
	var full []byte
	if len(buf) > 0 && len(buf)+frameSize(r) > maxBatchBytes {
		full, buf = buf, nil
	}
	if now {
		delete(s.pending, subj)
		s.mu.Unlock()
		if full != nil {
			if err := s.publish(subj, full); err != nil {
				return err
			}
		}
		return s.publishWait(subj, appendFrame(buf, r))
	}
	first := len(s.pending) == 0
	s.pending[subj] = appendFrame(buf, r)
	s.mu.Unlock()
	if first {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	if full != nil {
		return s.publish(subj, full)
	}
	return nil
}

func (s *Store) publish(subj string, frames []byte) error {
	m := nats.NewMsg(subj)
	m.Header.Set(headerFormat, formatFrames)
	m.Data = frames
	fut, err := s.js.PublishMsgAsync(m)
	if err != nil {
		return err
	}
	s.acks <- pubAck{subj: subj, size: int64(len(frames)), fut: fut}
	return nil
}

// electionRetry bounds publishWait's retries while the log stream of a
// replicated store elects a leader (a SIGKILLed leader: 5-9 s).
const electionRetry = 30 * time.Second

var errNoAck = errors.New("log store: no acknowledgement within 30s")

// publishWait publishes and waits until the stream stored the message (the
// keeper tells, in publish order, so every earlier message is settled too).
// While the stream elects a leader it tries again (bounded); the message
// id makes a retry of a message that was in fact stored a duplicate the
// stream drops.
func (s *Store) publishWait(subj string, frames []byte) error {
	id := msgID()
	deadline := time.Now().Add(electionRetry)
	wait := 100 * time.Millisecond
	for {
		err := s.publishWaitOnce(subj, frames, id)
		if err == nil || !electing(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-s.keeperDone:
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// electing: what a replicated stream answers while it has no leader (no
// responders, temporarily unavailable, not the leader, no acknowledgement).
func electing(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errNoAck) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10009 || apiErr.ErrorCode == 10158 || apiErr.Code == 503
	}
	return false
}

func msgID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "lp-" + hex.EncodeToString(b[:])
}

func (s *Store) publishWaitOnce(subj string, frames []byte, id string) error {
	m := nats.NewMsg(subj)
	m.Header.Set(headerFormat, formatFrames)
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Data = frames
	fut, err := s.js.PublishMsgAsync(m)
	if err != nil {
		return err
	}
	stored := make(chan error, 1)
	s.acks <- pubAck{subj: subj, size: int64(len(frames)), fut: fut, stored: stored}
	select {
	case err := <-stored:
		return err
	case <-s.keeperDone:
		select {
		case err := <-stored:
			return err
		default:
			return errors.New("log store closed before the record was stored")
		}
	}
}

// flusher stores the pending batches FlushDelay after the first record of
// a quiet period arrived, and once more on Close.
func (s *Store) flusher() {
	defer close(s.done)
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-s.kick:
		case <-s.quit:
			s.flush()
			return
		}
		t.Reset(s.delay)
		select {
		case <-t.C:
		case <-s.quit:
		}
		s.flush()
	}
}

func (s *Store) flush() {
	s.mu.Lock()
	batches := s.pending
	if len(batches) > 0 {
		s.pending = make(map[string][]byte, len(batches))
	}
	s.mu.Unlock()
	for subj, frames := range batches {
		_ = s.publish(subj, frames)
	}
}

// Close stores the pending records and waits (bounded by ctx) until the
// stream acknowledged them. Append fails afterwards.
func (s *Store) Close(ctx context.Context) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	<-s.done
	select {
	case <-s.keeperDone:
	case <-ctx.Done():
		close(s.abandon)
		<-s.keeperDone
	}
	select {
	case <-s.js.PublishAsyncComplete():
	case <-ctx.Done():
	}
}

// Purge deletes a function's logs (when the function is deleted), those
// still pending included. It runs in the keeper's order, after every
// message published before it is settled: a batch the flusher published
// just before is purged too, instead of being accounted (and kept) after
// its function's ledger entry went.
func (s *Store) Purge(ctx context.Context, acct, fn string) error {
	subj := subject(acct, fn)
	s.mu.Lock()
	delete(s.pending, subj)
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		done := make(chan error, 1)
		select {
		case s.acks <- pubAck{subj: subj, purge: true, stored: done}:
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
				return ctx.Err()
			case <-s.keeperDone: // closed meanwhile: purge here
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.purgeSubject(subj)
}

// purgeSubject removes a function's stored messages and its ledger entry.
func (s *Store) purgeSubject(subj string) error {
	s.mu.Lock()
	s.ledger.remove(subj)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.st.Purge(ctx, jetstream.WithPurgeSubject(subj))
}

// Follow calls fn for every stored record of the function (the last `tail`
// ones when tail > 0), then, if follow, for new ones until ctx ends.
// Records still in the flush delay are stored first, so a record appended
// before Follow is never missed.
func (s *Store) Follow(ctx context.Context, acct, fnName string, tail int, follow bool, fn func(Record) error) error {
	subj := subject(acct, fnName)
	s.mu.Lock()
	frames, ok := s.pending[subj]
	delete(s.pending, subj)
	s.mu.Unlock()
	if ok {
		if err := s.publish(subj, frames); err != nil {
			return err
		}
	}
	// Every batch published so far (this one included) is stored before
	// the count below.
	select {
	case <-s.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	info, err := s.st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return err
	}
	pending := info.State.Subjects[subj]
	// Every message holds at least one record: skipping all but the last
	// `tail` messages keeps at least `tail` records; the extra ones are
	// dropped below.
	var skip uint64
	if tail > 0 && pending > uint64(tail) {
		skip = pending - uint64(tail)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy}
	return s.consume(ctx, cfg, skip, pending, tail, follow, fn)
}

func (s *Store) consume(ctx context.Context, cfg jetstream.OrderedConsumerConfig, skip, pending uint64, tail int, follow bool, fn func(Record) error) error {
	c, err := s.st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	var seen uint64
	// The stored records (up to pending) are held back while tail is in
	// force, so only the last `tail` of them are passed on.
	var held []Record
	release := func() error {
		if tail > 0 && len(held) > tail {
			held = held[len(held)-tail:]
		}
		for _, r := range held {
			if err := fn(r); err != nil {
				return err
			}
		}
		held = nil
		tail = 0
		return nil
	}
	for {
		if seen >= pending {
			if err := release(); err != nil {
				return err
			}
			if !follow {
				return nil
			}
		}
		// Fetch returns when its batch is full or after the wait: ask for
		// exactly the stored messages left, so a plain read does not wait.
		n := 100
		if left := pending - seen; seen < pending && left < uint64(n) {
			n = int(left)
		}
		msgs, err := c.Fetch(n, jetstream.FetchMaxWait(time.Second))
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
			recs, err := decode(m)
			if err != nil {
				return err
			}
			for _, r := range recs {
				if tail > 0 && seen <= pending {
					held = append(held, r)
					continue
				}
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if got == 0 && !follow {
			return release()
		}
	}
}

// decode returns the records of one stored message: a batch of frames, or
// a single record with its fields in headers (logs stored before batching).
func decode(m jetstream.Msg) ([]Record, error) {
	h := m.Headers()
	if h.Get(headerFormat) != formatFrames {
		r := Record{Text: m.Data(), Version: h.Get(HeaderVersion), LogStream: h.Get(HeaderLogStream), RequestID: h.Get(HeaderRequestID)}
		if meta, _ := m.Metadata(); meta != nil {
			r.Time = meta.Timestamp
		}
		return []Record{r}, nil
	}
	return decodeFrames(m.Data())
}

// A frame is the record's time (varint Unix nanoseconds), then version,
// log stream, request id and text, each as a uvarint length and bytes.
func frameSize(r Record) int {
	return 5*binary.MaxVarintLen64 + len(r.Version) + len(r.LogStream) + len(r.RequestID) + len(r.Text)
}

func appendFrame(b []byte, r Record) []byte {
	b = binary.AppendVarint(b, r.Time.UnixNano())
	for _, f := range [][]byte{[]byte(r.Version), []byte(r.LogStream), []byte(r.RequestID), r.Text} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

var errBadFrame = errors.New("log store: malformed record frame")

func decodeFrames(b []byte) ([]Record, error) {
	var out []Record
	for len(b) > 0 {
		ns, k := binary.Varint(b)
		if k <= 0 {
			return out, errBadFrame
		}
		b = b[k:]
		var f [4][]byte
		for i := range f {
			n, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < n {
				return out, errBadFrame
			}
			f[i] = b[k : k+int(n)]
			b = b[k+int(n):]
		}
		out = append(out, Record{Time: time.Unix(0, ns), Version: string(f[0]), LogStream: string(f[1]), RequestID: string(f[2]), Text: f[3]})
	}
	return out, nil
}
