package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/diskspace"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A damaged store is never served silently.
//
// JetStream's file store repairs a damaged message block on its own when it
// recovers a stream: it truncates the block at the first bad record and
// carries on with what is left. It seldom says so (StreamState.Lost stays
// empty when the newest block is cut short, and the stream's last sequence
// is kept by a tombstone), and a block damaged in the middle of an older
// file may stay unnoticed until a read skips the message or stalls. So on
// every start the store checks each stream itself (verify):
//
//   - JetStream's own report of lost messages (StreamState.Lost);
//   - every message the stream's index counts is read back (record buckets
//     always, other streams up to scanMaxMsgs/scanMaxBytes): a message the
//     index counts but no read returns is lost;
//   - a record bucket's newest message exists (a KV put, delete or purge
//     always leaves the newest message in place; only loss removes it);
//   - the ledger: what the previous run recorded of every stream. After a
//     clean shutdown the state must be exactly what it was (messages,
//     bytes, first and last sequence); after a crash a stream may only have
//     grown its last sequence, and no stream may have vanished.
//
// What is found is refused with a *DataLossError, and remembered in the
// ledger, so the next start refuses too even though JetStream has repaired
// the files by then, until the operator restores a backup or starts with
// Options.AcceptDataLoss.

// ledgerFile, in the embedded server's store directory, is the ledger.
const ledgerFile = "lambdaplane-streams.json"

// ledgerRefresh is how often a running store records its streams' state.
const ledgerRefresh = 30 * time.Second

// Streams other than record buckets are read in full on start only up to
// these sizes (logs and code objects can be large; their loss is still
// found by the ledger and the last-sequence checks).
const (
	scanMaxMsgs  = 200_000
	scanMaxBytes = 1 << 30
)

// ErrDataLoss is matched by every *DataLossError.
var ErrDataLoss = errors.New("store: data lost")

// Loss is what the start-up check found missing from one stream.
type Loss struct {
	Stream string `json:"stream"`
	// Messages and Bytes lost, when known (0: unknown).
	Messages uint64 `json:"messages,omitempty"`
	Bytes    uint64 `json:"bytes,omitempty"`
	// The lost messages lie within FirstSeq..LastSeq (0: unknown).
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	// Found says how the loss showed, in words.
	Found string `json:"found"`
}

// String is one line naming the stream, what was lost and how it showed.
func (l Loss) String() string {
	var b strings.Builder
	b.WriteString(l.Stream)
	if what := streamKind(l.Stream); what != "" {
		fmt.Fprintf(&b, " (%s)", what)
	}
	b.WriteString(": ")
	switch {
	case l.Messages > 0 && l.Bytes > 0:
		fmt.Fprintf(&b, "%d messages (%s) lost", l.Messages, HumanBytes(int64(l.Bytes)))
	case l.Messages > 0:
		fmt.Fprintf(&b, "%d messages lost", l.Messages)
	case l.Bytes > 0:
		fmt.Fprintf(&b, "%s lost", HumanBytes(int64(l.Bytes)))
	default:
		b.WriteString("messages lost")
	}
	switch {
	case l.FirstSeq > 0 && l.FirstSeq == l.LastSeq:
		fmt.Fprintf(&b, " at sequence %d", l.FirstSeq)
	case l.FirstSeq > 0 && l.LastSeq > 0:
		fmt.Fprintf(&b, " within sequences %d-%d", l.FirstSeq, l.LastSeq)
	}
	if l.Found != "" {
		b.WriteString(": " + l.Found)
	}
	return b.String()
}

// streamKind names what lambdaplane keeps in a stream, by its prefix.
func streamKind(name string) string {
	switch {
	case strings.HasPrefix(name, "KV_"):
		return "records bucket " + strings.TrimPrefix(name, "KV_")
	case strings.HasPrefix(name, "OBJ_"):
		return "object store " + strings.TrimPrefix(name, "OBJ_")
	}
	return ""
}

// DataLossError refuses to serve a store that lost data.
type DataLossError struct {
	Store  string // the store directory, or the NATS URL
	Losses []Loss
}

func (e *DataLossError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the store in %s has lost data; refusing to serve what is left:\n", e.Store)
	for _, l := range e.Losses {
		b.WriteString("  - " + l.String() + "\n")
	}
	b.WriteString("restore from a backup with `lambdaplane restore DIR` (into an empty --data directory), " +
		"or start with --accept-data-loss to serve what is left")
	return b.String()
}

// Is makes errors.Is(err, ErrDataLoss) true.
func (e *DataLossError) Is(target error) bool { return target == ErrDataLoss }

// ledger is what a run records of every stream for the next start.
type ledger struct {
	// Clean is true only when the store was closed (not killed) after the
	// states were recorded: then they must match exactly on the next start.
	Clean   bool                    `json:"clean"`
	Written time.Time               `json:"written"`
	Streams map[string]streamRecord `json:"streams"`
	// Damage found by a start that refused to serve; the next start
	// refuses with it too until the loss is accepted.
	Damage []Loss `json:"damage,omitempty"`
}

type streamRecord struct {
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// NewestMissing is LastSeq when a record bucket's newest message is
	// known to be missing (a loss already accepted); JetStream keeps the
	// sequence after losing the message, until the next write.
	NewestMissing uint64 `json:"newest_missing,omitempty"`
}

func recordOf(st jetstream.StreamState) streamRecord {
	return streamRecord{Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq}
}

func readLedger(path string) (*ledger, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &ledger{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the store ledger: %w", err)
	}
	var l ledger
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("the store ledger %s is damaged (%v): restore from a backup with `lambdaplane restore DIR`, "+
			"or remove the file and start with --accept-data-loss to serve the store without checking it against its last recorded state", path, err)
	}
	return &l, nil
}

// writeLedger replaces the ledger atomically and durably.
func writeLedger(path string, l *ledger) error {
	l.Written = time.Now().UTC()
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write the store ledger: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write the store ledger: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write the store ledger: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the store ledger: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write the store ledger: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ledgerKeeper records the embedded store's streams while it runs.
type ledgerKeeper struct {
	path string
	srv  *server.Server
	log  *slog.Logger
	mu   sync.Mutex // serialises writes; closed stops them
	done bool
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	// missing holds the streams whose newest message was found missing on
	// start (and accepted), by that sequence.
	missing map[string]uint64
}

func (k *ledgerKeeper) start() {
	k.quit = make(chan struct{})
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		t := time.NewTicker(ledgerRefresh)
		defer t.Stop()
		for {
			select {
			case <-k.quit:
				return
			case <-t.C:
				if err := k.record(false); err != nil {
					k.log.Warn("recording the store's stream states", "err", err)
				}
			}
		}
	}()
}

// record writes the current states; clean marks the last write of a run.
func (k *ledgerKeeper) record(clean bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return nil
	}
	states, err := serverStates(k.srv)
	if err != nil {
		return err
	}
	return writeLedger(k.path, &ledger{Clean: clean, Streams: k.carry(states)})
}

// carry keeps the accepted missing-newest marks of streams not written since.
func (k *ledgerKeeper) carry(states map[string]streamRecord) map[string]streamRecord {
	for name, seq := range k.missing {
		if r, ok := states[name]; ok && r.LastSeq == seq {
			r.NewestMissing = seq
			states[name] = r
		}
	}
	return states
}

// close records the final states once nothing writes any more: the client
// connection is drained, and acknowledgements the server still processes
// (a work queue removes an acknowledged message asynchronously) are waited
// for by reading the states until two readings agree.
func (k *ledgerKeeper) close() {
	k.once.Do(func() { close(k.quit) })
	k.wg.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return
	}
	k.done = true
	prev, err := serverStates(k.srv)
	for i := 0; err == nil && i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		var cur map[string]streamRecord
		if cur, err = serverStates(k.srv); err == nil {
			if mapsEqual(prev, cur) {
				break
			}
			prev = cur
		}
	}
	if err == nil {
		err = writeLedger(k.path, &ledger{Clean: true, Streams: k.carry(prev)})
	}
	if err != nil {
		k.log.Warn("recording the store's stream states at shutdown (the next start checks less)", "err", err)
	}
}

func mapsEqual(a, b map[string]streamRecord) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// serverStates reads every stream's state from the embedded server itself
// (no client connection needed, so it works after the drain).
func serverStates(srv *server.Server) (map[string]streamRecord, error) {
	info, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return nil, fmt.Errorf("read stream states: %w", err)
	}
	out := map[string]streamRecord{}
	for _, a := range info.AccountDetails {
		for _, sd := range a.Streams {
			st := sd.State
			out[sd.Name] = streamRecord{Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq}
		}
	}
	return out, nil
}

// verify checks every stream on start (see the top of this file). It
// returns a *DataLossError unless o.AcceptDataLoss, and starts the ledger
// keeper of an embedded store.
func (s *Store) verify(ctx context.Context, o Options) error {
	var (
		led  *ledger
		path string
		err  error
	)
	if s.clustered {
		// A member's streams are replicated: a damaged local copy is
		// caught up from the others by JetStream itself, and a start must
		// not wait on streams whose leader is being re-elected.
		return nil
	}
	where := o.URL
	// A cluster member's streams are changed by the other members while it
	// is down: its ledger of local states would claim losses. Replicas on
	// the other hosts are what keeps a cluster's writes.
	ledgered := s.srv != nil && !s.clustered
	if ledgered {
		where = filepath.Join(o.DataDir, "nats")
		path = filepath.Join(where, ledgerFile)
		if led, err = readLedger(path); err != nil {
			if !o.AcceptDataLoss {
				return err
			}
			s.log.Warn("store: the ledger is unreadable; starting without it (--accept-data-loss)", "err", err)
			led = &ledger{}
		}
	}
	t := time.Now()
	losses, states, err := s.inspect(ctx, led)
	if err != nil {
		return fmt.Errorf("check the store: %w", err)
	}
	if led != nil {
		losses = mergeLosses(led.Damage, losses)
	}
	if len(losses) > 0 {
		if !o.AcceptDataLoss {
			if led != nil {
				led.Damage = losses
				if err := writeLedger(path, led); err != nil {
					s.log.Warn("recording the store's damage", "err", err)
				}
			}
			return &DataLossError{Store: where, Losses: losses}
		}
		for _, l := range losses {
			s.log.Warn("store: serving what is left of a stream that lost data (--accept-data-loss)", "stream", l.Stream, "loss", l.String())
		}
	}
	s.log.Debug("store checked", "streams", len(states), "took", time.Since(t).Round(time.Millisecond))
	if ledgered {
		if err := writeLedger(path, &ledger{Clean: false, Streams: states}); err != nil {
			if !diskspace.IsNoSpace(err) {
				return err
			}
			// A full disk must not keep the server from starting (it frees
			// space by deleting functions). The previous run's ledger
			// would claim states this run changes: it goes (the next
			// start checks without one, as after a crash); the keeper
			// records again once space returns.
			s.log.Warn("store: the disk is full; the stream states are recorded once space returns", "err", err)
			if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return err
			}
		}
		s.ledger = &ledgerKeeper{path: path, srv: s.srv, log: s.log, missing: map[string]uint64{}}
		for name, r := range states {
			if r.NewestMissing != 0 {
				s.ledger.missing[name] = r.NewestMissing
			}
		}
		s.ledger.start()
	}
	return nil
}

// mergeLosses keeps what an earlier start recorded (it saw the damage
// before JetStream repaired it) and adds losses of other streams.
func mergeLosses(recorded, found []Loss) []Loss {
	out := slices.Clone(recorded)
	for _, l := range found {
		if !slices.ContainsFunc(out, func(r Loss) bool { return r.Stream == l.Stream }) {
			out = append(out, l)
		}
	}
	return out
}

// inspect checks every stream against itself and the ledger (nil: none)
// and returns what was lost and every stream's state after the check.
func (s *Store) inspect(ctx context.Context, led *ledger) ([]Loss, map[string]streamRecord, error) {
	var infos []*jetstream.StreamInfo
	lister := s.js.ListStreams(ctx)
	for info := range lister.Info() {
		infos = append(infos, info)
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, nil, fmt.Errorf("list streams: %w", err)
	}
	slices.SortFunc(infos, func(a, b *jetstream.StreamInfo) int { return strings.Compare(a.Config.Name, b.Config.Name) })
	states := map[string]streamRecord{}
	var losses []Loss
	for _, info := range infos {
		name := info.Config.Name
		var rec *streamRecord
		if led != nil {
			if r, ok := led.Streams[name]; ok {
				rec = &r
			}
		}
		l, now, err := s.checkStream(ctx, info, rec, led != nil && led.Clean)
		if err != nil {
			return nil, nil, fmt.Errorf("stream %s: %w", name, err)
		}
		states[name] = now
		if l != nil {
			losses = append(losses, *l)
		}
	}
	if led != nil {
		for name, rec := range led.Streams {
			if _, ok := states[name]; ok {
				continue
			}
			losses = append(losses, Loss{Stream: name, Messages: rec.Messages, Bytes: rec.Bytes, FirstSeq: rec.FirstSeq, LastSeq: rec.LastSeq,
				Found: "the whole stream is gone"})
		}
	}
	slices.SortFunc(losses, func(a, b Loss) int { return strings.Compare(a.Stream, b.Stream) })
	return losses, states, nil
}

// finding accumulates one stream's evidence into one Loss.
type finding struct {
	loss  Loss
	found []string
}

func (f *finding) add(msgs, bytes, first, last uint64, why string) {
	f.loss.Messages = max(f.loss.Messages, msgs)
	f.loss.Bytes = max(f.loss.Bytes, bytes)
	if first > 0 && (f.loss.FirstSeq == 0 || first < f.loss.FirstSeq) {
		f.loss.FirstSeq = first
	}
	f.loss.LastSeq = max(f.loss.LastSeq, last)
	f.found = append(f.found, why)
}

func (f *finding) result() *Loss {
	if len(f.found) == 0 {
		return nil
	}
	f.loss.Found = strings.Join(f.found, "; ")
	return &f.loss
}

// checkStream checks one stream; rec is the ledger's record of it (nil:
// none), exact whether the previous run closed cleanly.
func (s *Store) checkStream(ctx context.Context, info *jetstream.StreamInfo, rec *streamRecord, exact bool) (*Loss, streamRecord, error) {
	name := info.Config.Name
	before := info.State
	f := &finding{loss: Loss{Stream: name}}
	isKV := strings.HasPrefix(name, "KV_")
	var newestMissing uint64

	// Read every message the index counts.
	var sc *scanResult
	if how := howToScan(info.Config, before); how != scanNone {
		var err error
		if sc, err = s.scan(ctx, name, how, before.FirstSeq, before.LastSeq, before.Msgs); err != nil {
			return nil, streamRecord{}, fmt.Errorf("read it back: %w", err)
		}
	}
	// Reading may make JetStream notice damage and repair the block.
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, streamRecord{}, err
	}
	now, err := st.Info(ctx)
	if err != nil {
		return nil, streamRecord{}, err
	}
	state := now.State

	if lost := state.Lost; lost != nil && len(lost.Msgs) > 0 {
		f.add(uint64(len(lost.Msgs)), lost.Bytes, slices.Min(lost.Msgs), slices.Max(lost.Msgs), "JetStream reports them lost")
	}
	if sc != nil && sc.count < before.Msgs && live(info.Config, before, state) {
		// Written to or expiring while it was read (another host of a
		// cluster is running): a message counted before the scan may have
		// been removed since, as it may be (a key's older revision, an
		// expired one). Lost are only those the index still holds and
		// that cannot be read even now.
		if lost, err := stillUnreadable(ctx, st, before, sc); err != nil {
			return nil, streamRecord{}, err
		} else if len(lost) > 0 {
			f.add(uint64(len(lost)), 0, lost[0], lost[len(lost)-1], fmt.Sprintf("the stream's index counts %d messages that cannot be read", len(lost)))
		}
	} else if sc != nil && sc.count < before.Msgs {
		missing := before.Msgs - sc.count
		first, last := before.FirstSeq, before.LastSeq
		// Name the exact sequences when the index still lists the same
		// messages: they are the ones neither deleted nor read.
		if state.Msgs == before.Msgs && state.NumDeleted > 0 && state.NumDeleted <= 1_000_000 {
			if d, err := st.Info(ctx, jetstream.WithDeletedDetails(true)); err == nil {
				if seqs := unread(before.FirstSeq, before.LastSeq, d.State.Deleted, sc.seen); len(seqs) > 0 {
					first, last = seqs[0], seqs[len(seqs)-1]
				}
			}
		} else if state.NumDeleted == 0 && len(sc.gaps) > 0 {
			first, last = sc.gaps[0][0], sc.gaps[len(sc.gaps)-1][1]
		}
		f.add(missing, 0, first, last, fmt.Sprintf("the stream's index counts %d messages but only %d can be read", before.Msgs, sc.count))
	}
	if isKV && state.LastSeq > 0 {
		present := false
		if sc != nil && state.LastSeq == before.LastSeq {
			present = sc.last == state.LastSeq
		} else {
			_, err := st.GetMsg(ctx, state.LastSeq)
			present = err == nil
		}
		if !present {
			newestMissing = state.LastSeq
			if rec == nil || rec.NewestMissing != state.LastSeq {
				f.add(0, 0, 0, state.LastSeq, fmt.Sprintf("its newest message (sequence %d) is missing", state.LastSeq))
			}
		}
	}
	if rec != nil {
		if state.LastSeq < rec.LastSeq {
			f.add(0, 0, state.LastSeq+1, rec.LastSeq, fmt.Sprintf("its last sequence went back from %d to %d", rec.LastSeq, state.LastSeq))
		}
		if r := recordOf(state); exact && (r.Messages != rec.Messages || r.Bytes != rec.Bytes || r.FirstSeq != rec.FirstSeq || r.LastSeq != rec.LastSeq) {
			var msgs, bytes uint64
			if rec.Messages > state.Msgs {
				msgs = rec.Messages - state.Msgs
			}
			if rec.Bytes > state.Bytes {
				bytes = rec.Bytes - state.Bytes
			}
			f.add(msgs, bytes, rec.FirstSeq, rec.LastSeq, fmt.Sprintf(
				"it held %d messages (%s, sequences %d-%d) when the store was last closed and holds %d (%s, sequences %d-%d) now",
				rec.Messages, HumanBytes(int64(rec.Bytes)), rec.FirstSeq, rec.LastSeq,
				state.Msgs, HumanBytes(int64(state.Bytes)), state.FirstSeq, state.LastSeq))
		}
	}
	out := recordOf(state)
	out.NewestMissing = newestMissing
	return f.result(), out, nil
}

// unread lists the sequences in first..last neither deleted nor seen.
func unread(first, last uint64, deleted, seen []uint64) []uint64 {
	del := make(map[uint64]struct{}, len(deleted))
	for _, d := range deleted {
		del[d] = struct{}{}
	}
	var out []uint64
	i := 0
	for q := first; q <= last && q != 0; q++ {
		for i < len(seen) && seen[i] < q {
			i++
		}
		if i < len(seen) && seen[i] == q {
			continue
		}
		if _, ok := del[q]; ok {
			continue
		}
		out = append(out, q)
	}
	return out
}

// live reports whether a stream may have lost messages legitimately while
// it was read: it was written to meanwhile (a key's new revision removes
// the older one), or its messages expire.
func live(cfg jetstream.StreamConfig, before, after jetstream.StreamState) bool {
	return after.LastSeq > before.LastSeq || cfg.MaxAge > 0 || cfg.AllowMsgTTL
}

// stillUnreadable returns the sequences of before's range that were not
// read, are neither deleted nor expired now, and still cannot be read
// (at most 1,000 are tried; beyond that the rest count as unreadable).
func stillUnreadable(ctx context.Context, st jetstream.Stream, before jetstream.StreamState, sc *scanResult) ([]uint64, error) {
	now, err := st.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return nil, err
	}
	first := max(before.FirstSeq, now.State.FirstSeq)
	var gone []uint64 // not found: removed meanwhile, or lost
	for i, q := range unread(first, min(before.LastSeq, now.State.LastSeq), now.State.Deleted, sc.seen) {
		if i >= 1000 {
			gone = append(gone, q)
			continue
		}
		if _, err := st.GetMsg(ctx, q); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, err
		}
		gone = append(gone, q)
	}
	if len(gone) == 0 {
		return nil, nil
	}
	// Removed between the two reads of the index: not lost unless the
	// index still counts it.
	again, err := st.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return nil, err
	}
	deleted := make(map[uint64]bool, len(again.State.Deleted))
	for _, d := range again.State.Deleted {
		deleted[d] = true
	}
	var lost []uint64
	for _, q := range gone {
		if q >= again.State.FirstSeq && !deleted[q] {
			lost = append(lost, q)
		}
	}
	return lost, nil
}

// scanResult is what reading a stream from its first sequence gave.
type scanResult struct {
	count uint64
	last  uint64      // the last sequence read
	seen  []uint64    // every sequence read, ascending
	gaps  [][2]uint64 // runs of sequences skipped between reads
	next  uint64      // the sequence after the last message a read returned (any, even past the range)
}

// nextAfter is where the next read starts: after the last message any read
// returned, or at seq if none did.
func (r *scanResult) nextAfter(seq uint64) uint64 {
	if r.next > seq {
		return r.next
	}
	return seq
}

func (r *scanResult) saw(seq uint64) {
	if r.last != 0 && seq > r.last+1 {
		r.gaps = append(r.gaps, [2]uint64{r.last + 1, seq - 1})
	}
	r.count++
	r.last = seq
	r.seen = append(r.seen, seq)
}

// scanMethod is how a stream is read back on start.
type scanMethod int

const (
	scanNone     scanMethod = iota
	scanDirect              // batches of direct gets (buckets, object stores)
	scanGet                 // one message get at a time (work queues)
	scanConsumer            // an ephemeral ordered consumer, headers only
)

// scanGetMax bounds the messages read one get at a time (~0.1 ms each).
const scanGetMax = 20_000

// howToScan picks how to read a stream back, or scanNone when it is too
// large to read on every start.
func howToScan(cfg jetstream.StreamConfig, st jetstream.StreamState) scanMethod {
	isKV := strings.HasPrefix(cfg.Name, "KV_")
	switch {
	case !isKV && (st.Msgs > scanMaxMsgs || st.Bytes > scanMaxBytes):
		return scanNone
	case cfg.AllowDirect:
		return scanDirect
	case cfg.Retention == jetstream.WorkQueuePolicy:
		// A work queue takes no second consumer, nor one without acks.
		if st.Msgs > scanGetMax && !isKV {
			return scanNone
		}
		return scanGet
	}
	return scanConsumer
}

// scan reads every message of a stream from first to last (see
// howToScan); the consumer stops once it has delivered the msgs the index
// counts or stalls for scanStall. A message the file store cannot read is
// skipped by the server (or ends the read): the caller compares the count
// with the index.
func (s *Store) scan(ctx context.Context, stream string, how scanMethod, first, last, msgs uint64) (*scanResult, error) {
	r := &scanResult{}
	if last == 0 || first > last || msgs == 0 {
		return r, nil
	}
	switch how {
	case scanDirect:
		return r, s.scanDirect(ctx, stream, first, last, r)
	case scanGet:
		return r, s.scanGet(ctx, stream, first, last, r)
	}
	cons, err := s.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first, HeadersOnly: true,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		// Gone at once rather than after its inactivity threshold (a
		// backup would otherwise carry it).
		if info := cons.CachedInfo(); info != nil {
			_ = s.js.DeleteConsumer(ctx, stream, info.Name)
		}
	}()
	for r.count < msgs {
		batch, err := cons.Fetch(scanBatch, jetstream.FetchMaxWait(scanStall))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if q := md.Sequence.Stream; q > r.last && q <= last {
				r.saw(q)
			}
			got++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		if got == 0 {
			break // nothing more can be read
		}
	}
	return r, nil
}

// scanStall is how long a consumer scan waits for the next message before
// it takes the rest of the stream as unreadable.
const scanStall = time.Second

const scanBatch = 5000

// scanBatchBytes bounds the bytes of one direct-get batch.
const scanBatchBytes = 4 << 20

func (s *Store) scanGet(ctx context.Context, stream string, first, last uint64, r *scanResult) error {
	for seq := first; seq <= last; {
		req, _ := json.Marshal(map[string]any{"seq": seq, "next_by_subj": ">"})
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := s.nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET."+stream, req)
		cancel()
		if err != nil {
			return err
		}
		var resp struct {
			Message *struct {
				Seq uint64 `json:"seq"`
			} `json:"message"`
			Error *apiError `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return err
		}
		if resp.Error != nil {
			if resp.Error.Code == 404 {
				return nil
			}
			return fmt.Errorf("get message from %d: %w", seq, resp.Error)
		}
		if resp.Message == nil || resp.Message.Seq < seq || resp.Message.Seq > last {
			return nil
		}
		r.saw(resp.Message.Seq)
		seq = resp.Message.Seq + 1
	}
	return nil
}

func (s *Store) scanDirect(ctx context.Context, stream string, first, last uint64, r *scanResult) error {
	inbox := s.nc.NewInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	// A batch is bounded in bytes too (object-store chunks are 128 KiB), so
	// what one request returns fits the subscription.
	if err := sub.SetPendingLimits(-1, 4*scanBatchBytes); err != nil {
		return err
	}
	for seq := first; seq <= last; {
		req, _ := json.Marshal(map[string]any{"seq": seq, "next_by_subj": ">", "batch": scanBatch, "max_bytes": scanBatchBytes})
		got, err := s.directBatch(ctx, sub, stream, inbox, req, seq, last, r)
		if errors.Is(err, errNoDirectAnswer) {
			// Right after a start that recovered the stream (a kill during
			// the previous start), the stream may not answer direct gets
			// yet: read the rest through the API, which always answers.
			s.log.Warn("stream does not answer direct gets; reading it back message by message", "stream", stream, "from", seq)
			return s.scanGet(ctx, stream, r.nextAfter(seq), last, r)
		}
		if err != nil {
			return err
		}
		if got == 0 {
			break
		}
		seq = r.nextAfter(seq)
	}
	return nil
}

// errNoDirectAnswer: a direct-get batch request was never answered.
var errNoDirectAnswer = errors.New("no answer to direct get")

// directBatch sends one direct-get batch request (again, a few times, if
// nothing at all comes back) and records what it returns; got counts the
// messages.
func (s *Store) directBatch(ctx context.Context, sub *nats.Subscription, stream, inbox string, req []byte, seq, last uint64, r *scanResult) (got int, err error) {
	for attempt := 0; ; attempt++ {
		if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
			return 0, err
		}
		answered := false
		for {
			wait := 2 * time.Second
			if answered {
				wait = 10 * time.Second
			}
			rctx, cancel := context.WithTimeout(ctx, wait)
			m, err := sub.NextMsgWithContext(rctx)
			cancel()
			if err != nil {
				if !answered && ctx.Err() == nil {
					break // retry the request
				}
				return got, fmt.Errorf("direct get from %d: %w", seq, err)
			}
			answered = true
			if status := m.Header.Get("Status"); status != "" {
				// 204 ends a batch, 404 says nothing is left.
				if status != "204" && status != "404" {
					return got, fmt.Errorf("direct get from %d: %s %s", seq, status, m.Header.Get("Description"))
				}
				return got, nil
			}
			q, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil || q < seq {
				return got, fmt.Errorf("direct get from %d: bad sequence header %q", seq, m.Header.Get(jetstream.SequenceHeader))
			}
			if q <= last {
				r.saw(q)
			}
			r.next = q + 1
			got++
		}
		if attempt >= 2 {
			return 0, errNoDirectAnswer
		}
	}
}

// natsLogger passes the embedded server's warnings and errors (the file
// store's reports of damaged blocks among them) to the store's logger.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(f string, a ...any) { n.l.Debug(fmt.Sprintf(f, a...), "component", "nats") }
func (n natsLogger) Warnf(f string, a ...any)   { n.l.Warn(fmt.Sprintf(f, a...), "component", "nats") }
func (n natsLogger) Fatalf(f string, a ...any)  { n.l.Error(fmt.Sprintf(f, a...), "component", "nats") }
func (n natsLogger) Errorf(f string, a ...any)  { n.l.Error(fmt.Sprintf(f, a...), "component", "nats") }
func (n natsLogger) Debugf(f string, a ...any)  {}
func (n natsLogger) Tracef(f string, a ...any)  {}

var _ server.Logger = natsLogger{}

// HumanBytes formats n as 12.3 MB (decimal units).
func HumanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
