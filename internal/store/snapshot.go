package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Snapshots and restores go through JetStream's own API on the store's
// connection ($JS.API.STREAM.SNAPSHOT / RESTORE, as the nats CLI uses
// them), so they work the same for the embedded server and an external one.
// A stream's snapshot is consistent on its own: JetStream fixes the set of
// messages when it starts and streams them while writes go on. It includes
// the stream's consumers (the async-invoke queue's acknowledgement state).

// StreamSummary is one stream as a backup lists it.
type StreamSummary struct {
	Name      string `json:"name"`
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Consumers int    `json:"consumers"`
}

// Streams lists every stream in backup order: record buckets (KV_*) first,
// then object stores (OBJ_*, the code packages), then the rest (queues,
// logs), each group by name. Code is put before the record that names it,
// so a record in a snapshot finds its code in the later one.
func (s *Store) Streams(ctx context.Context) ([]StreamSummary, error) {
	var out []StreamSummary
	lister := s.js.ListStreams(ctx)
	for info := range lister.Info() {
		st := info.State
		out = append(out, StreamSummary{Name: info.Config.Name, Messages: st.Msgs, Bytes: st.Bytes,
			FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Consumers: st.Consumers})
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	rank := func(n string) int {
		switch {
		case strings.HasPrefix(n, "KV_"):
			return 0
		case strings.HasPrefix(n, "OBJ_"):
			return 1
		}
		return 2
	}
	slices.SortFunc(out, func(a, b StreamSummary) int {
		if ra, rb := rank(a.Name), rank(b.Name); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// SnapshotMeta is what restoring a snapshot needs besides its bytes: the
// stream's configuration and state as JetStream reported them when the
// snapshot began, kept verbatim.
type SnapshotMeta struct {
	Stream string          `json:"stream"`
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
	// Parsed from State.
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (code %d)", e.Description, e.ErrCode) }

const (
	snapshotChunk   = 128 << 10
	snapshotIdle    = 30 * time.Second // no chunk for this long: the snapshot stalled
	restoreFinalize = 10 * time.Minute // the server rebuilds a restored stream after the last chunk
)

// Snapshot streams a consistent snapshot of stream to w: JetStream's own
// format (an s2-compressed tar of the stream's blocks and consumers).
// meta is called once with the stream's configuration and state before the
// first byte is written. It returns the bytes written.
func (s *Store) Snapshot(ctx context.Context, stream string, w io.Writer, meta func(SnapshotMeta) error) (int64, error) {
	inbox := s.nc.NewInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	// The server sends up to its 8 MB window before waiting for acks.
	_ = sub.SetPendingLimits(-1, 64<<20)
	if err := s.nc.Flush(); err != nil {
		return 0, err
	}
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "chunk_size": snapshotChunk})
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	m, err := s.nc.RequestWithContext(rctx, "$JS.API.STREAM.SNAPSHOT."+stream, req)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", stream, err)
	}
	var resp struct {
		Error  *apiError       `json:"error"`
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", stream, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return 0, fmt.Errorf("snapshot %s: %w: %w", stream, ErrNotFound, resp.Error)
		}
		return 0, fmt.Errorf("snapshot %s: %w", stream, resp.Error)
	}
	md := SnapshotMeta{Stream: stream, Config: resp.Config, State: resp.State}
	var st jetstream.StreamState
	if err := json.Unmarshal(resp.State, &st); err != nil {
		return 0, fmt.Errorf("snapshot %s: state: %w", stream, err)
	}
	md.Messages, md.Bytes, md.FirstSeq, md.LastSeq = st.Msgs, st.Bytes, st.FirstSeq, st.LastSeq
	if err := meta(md); err != nil {
		return 0, err
	}
	var n int64
	for {
		cctx, cancel := context.WithTimeout(ctx, snapshotIdle)
		c, err := sub.NextMsgWithContext(cctx)
		cancel()
		if err != nil {
			return n, fmt.Errorf("snapshot %s after %d bytes: %w", stream, n, err)
		}
		if len(c.Data) == 0 {
			// The end: no status or 204 is success; 408 and 500 say why not.
			if code := c.Header.Get("Status"); code != "" && code != "204" {
				return n, fmt.Errorf("snapshot %s after %d bytes: %s %s", stream, n, code, c.Header.Get("Description"))
			}
			return n, nil
		}
		k, err := w.Write(c.Data)
		n += int64(k)
		if err != nil {
			return n, err
		}
		if c.Reply != "" {
			if err := c.Respond(nil); err != nil {
				return n, err
			}
		}
	}
}

// Restore creates a stream from a snapshot read from r. The stream must not
// exist. progress (may be nil) is called with the bytes sent so far. It
// returns the restored stream's state.
func (s *Store) Restore(ctx context.Context, md SnapshotMeta, r io.Reader, progress func(int64)) (*StreamSummary, error) {
	req, err := json.Marshal(map[string]json.RawMessage{"config": md.Config, "state": md.State})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	m, err := s.nc.RequestWithContext(rctx, "$JS.API.STREAM.RESTORE."+md.Stream, req)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", md.Stream, err)
	}
	var start struct {
		Error          *apiError `json:"error"`
		DeliverSubject string    `json:"deliver_subject"`
	}
	if err := json.Unmarshal(m.Data, &start); err != nil {
		return nil, fmt.Errorf("restore %s: %w", md.Stream, err)
	}
	if start.Error != nil {
		return nil, fmt.Errorf("restore %s: %w", md.Stream, start.Error)
	}
	buf := make([]byte, snapshotChunk)
	var sent int64
	for {
		k, rerr := io.ReadFull(r, buf)
		if k > 0 {
			if err := s.restoreChunk(ctx, start.DeliverSubject, buf[:k], time.Minute); err != nil {
				return nil, fmt.Errorf("restore %s after %d bytes: %w", md.Stream, sent, err)
			}
			sent += int64(k)
			if progress != nil {
				progress(sent)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("restore %s: read the snapshot: %w", md.Stream, rerr)
		}
	}
	// An empty chunk ends the upload; the reply comes once the stream is
	// rebuilt from it.
	fctx, cancel := context.WithTimeout(ctx, restoreFinalize)
	m, err = s.nc.RequestWithContext(fctx, start.DeliverSubject, nil)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("restore %s: finish: %w", md.Stream, err)
	}
	var done struct {
		Error *apiError `json:"error"`
		State *struct {
			Msgs      uint64 `json:"messages"`
			Bytes     uint64 `json:"bytes"`
			FirstSeq  uint64 `json:"first_seq"`
			LastSeq   uint64 `json:"last_seq"`
			Consumers int    `json:"consumer_count"`
		} `json:"state"`
	}
	if err := json.Unmarshal(m.Data, &done); err != nil {
		return nil, fmt.Errorf("restore %s: finish: %w", md.Stream, err)
	}
	if done.Error != nil {
		return nil, fmt.Errorf("restore %s: %w", md.Stream, done.Error)
	}
	if done.State == nil {
		return nil, fmt.Errorf("restore %s: the server returned no stream state", md.Stream)
	}
	st := done.State
	return &StreamSummary{Name: md.Stream, Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Consumers: st.Consumers}, nil
}

// restoreChunk sends one chunk and waits for the server to take it: an
// empty reply is success, anything else an error response.
func (s *Store) restoreChunk(ctx context.Context, subject string, chunk []byte, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := s.nc.RequestWithContext(cctx, subject, chunk)
	if err != nil {
		return err
	}
	if len(m.Data) == 0 {
		return nil
	}
	var resp struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(m.Data, &resp) == nil && resp.Error != nil {
		return resp.Error
	}
	return fmt.Errorf("unexpected reply %q", m.Data)
}
