package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors returned by the store. They wrap nothing the caller must inspect.
var (
	ErrNotFound = errors.New("store: record not found")
	ErrExists   = errors.New("store: record already exists")
	ErrConflict = errors.New("store: revision conflict")
)

// Options configures Open.
type Options struct {
	// DataDir holds the embedded server's JetStream file store (DataDir/nats).
	DataDir string
	// URL, when set, connects to an external NATS server with JetStream
	// instead of starting an embedded one.
	URL string
	// Logger receives store events; nil means slog.Default().
	Logger *slog.Logger
	// SyncInterval, when positive, makes the embedded server sync its
	// files to disk in the background this often instead of after every
	// write: an acknowledged write can then be lost to a host crash (not
	// to a process kill). Zero, the default, syncs every write before it
	// is acknowledged. Benchmarks compare the two; an external server
	// (URL) keeps its own setting (sync_always, replicas).
	SyncInterval time.Duration
	// AcceptDataLoss opens a store whose start-up check found lost data
	// (logging what was lost) instead of refusing it with a *DataLossError.
	AcceptDataLoss bool
	// Cluster, when its Listen is set, runs the embedded server as one
	// voting member of a JetStream cluster (cluster.go).
	Cluster ClusterOptions
	// Replicas is the replica count of every bucket and stream created;
	// 0 = min(3, voting servers) (embedded), or for an external server
	// the replicas of the existing record buckets, else 1.
	Replicas int
}

// Store is an open connection to JetStream plus, when embedded, the server.
type Store struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	// ledger records the embedded store's stream states (integrity.go).
	ledger *ledgerKeeper
	// jsCfg is the embedded JetStream's configuration (RestartJetStream).
	jsCfg *server.JetStreamConfig
	// replicas of every bucket and stream this store creates.
	replicas int
	// clustered: the embedded server is a member of a JetStream cluster.
	clustered bool
}

// Open starts (or connects to) NATS and returns a ready Store.
func Open(ctx context.Context, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Store{log: log}
	if o.URL != "" {
		nc, err := nats.Connect(o.URL, nats.Name("lambdaplane"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w (check --nats-url and that the server runs with JetStream enabled)", o.URL, err)
		}
		s.nc = nc
	} else {
		dir := filepath.Join(o.DataDir, "nats")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
		opts := &server.Options{
			ServerName:         "lambdaplane",
			JetStream:          true,
			StoreDir:           dir,
			DontListen:         true,
			NoSigs:             true,
			MaxPayload:         8 << 20,
			JetStreamMaxMemory: 256 << 20,
			JetStreamMaxStore:  64 << 30,
			// Every stream and bucket (records, code, queued events,
			// logs, consumers' acknowledgements) is written to disk
			// before the write is acknowledged: on a cluster by
			// sync_always, alone by group commit (groupcommit.go).
			SyncAlways:   o.SyncInterval <= 0 && o.Cluster.Listen != "",
			SyncInterval: 2 * time.Second,
		}
		if o.SyncInterval > 0 {
			opts.SyncInterval = o.SyncInterval
		}
		if o.Cluster.Listen != "" {
			if err := o.Cluster.apply(opts); err != nil {
				return nil, err
			}
			s.clustered = true
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS: %w", err)
		}
		srv.SetLoggerV2(natsLogger{log}, false, false, false)
		srv.Start()
		if !srv.ReadyForConnections(30 * time.Second) {
			srv.Shutdown()
			return nil, fmt.Errorf("embedded NATS in %s did not become ready", dir)
		}
		s.srv = srv
		s.jsCfg = srv.JetStreamConfig()
		var conns nats.InProcessConnProvider = srv
		if o.SyncInterval <= 0 && o.Cluster.Listen == "" {
			conns = groupCommitted{srv, newGroupSyncer(dir, log)}
		}
		nc, err := nats.Connect("", nats.InProcessServer(conns), nats.Name("lambdaplane"))
		if err != nil {
			srv.Shutdown()
			return nil, fmt.Errorf("connect to embedded NATS: %w", err)
		}
		s.nc = nc
	}
	// An asynchronous publish the store never answers (a stream stalled
	// by a full disk drops it silently) fails after publishAsyncTimeout
	// instead of being waited for forever.
	js, err := jetstream.New(s.nc, jetstream.WithPublishAsyncTimeout(publishAsyncTimeout))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	if err := s.settle(ctx, o); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.verify(ctx, o); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// JetStream exposes the JetStream context for streams (queues, logs). A
// stream or bucket created through it without a replica count gets the
// store's (Replicas).
func (s *Store) JetStream() jetstream.JetStream {
	if s.replicas > 1 {
		return replicated{s.js, s.replicas, s.nc}
	}
	return s.js
}

// Conn exposes the NATS connection.
func (s *Store) Conn() *nats.Conn { return s.nc }

// Close drains the connection and shuts an embedded server down.
func (s *Store) Close() {
	if s.nc != nil {
		_ = s.nc.Drain()
		s.nc.Close()
	}
	if s.ledger != nil {
		s.ledger.close()
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}

// Bucket opens (creating if needed) a KV bucket of JSON records.
func (s *Store) Bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	kv, err := s.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       name,
		History:      1,
		Storage:      jetstream.FileStorage,
		MaxValueSize: 4 << 20,
		Replicas:     s.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return kv, nil
}

// Objects opens (creating if needed) an object store for large blobs.
func (s *Store) Objects(ctx context.Context, name string) (jetstream.ObjectStore, error) {
	os, err := s.JetStream().CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:   name,
		Storage:  jetstream.FileStorage,
		Replicas: s.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", name, err)
	}
	return os, nil
}

// Table is a typed view of one bucket: records of type T, JSON-encoded.
type Table[T any] struct {
	kv jetstream.KeyValue
}

// NewTable opens bucket name as a Table of T.
func NewTable[T any](ctx context.Context, s *Store, name string) (*Table[T], error) {
	kv, err := s.Bucket(ctx, name)
	if err != nil {
		return nil, err
	}
	return &Table[T]{kv: kv}, nil
}

// KV exposes the underlying bucket (for watches).
func (t *Table[T]) KV() jetstream.KeyValue { return t.kv }

// Get reads key. It returns ErrNotFound when absent.
func (t *Table[T]) Get(ctx context.Context, key string) (*T, uint64, error) {
	e, err := t.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, 0, ErrNotFound
		}
		return nil, 0, fmt.Errorf("get %s: %w", key, err)
	}
	v := new(T)
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return nil, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, e.Revision(), nil
}

// Create writes key only if it does not exist (ErrExists otherwise).
func (t *Table[T]) Create(ctx context.Context, key string, v *T) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	rev, err := t.kv.Create(ctx, key, b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrExists
		}
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	return rev, nil
}

// Put writes key unconditionally.
func (t *Table[T]) Put(ctx context.Context, key string, v *T) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return t.kv.Put(ctx, key, b)
}

// UpdateAt writes key only if its revision is still rev (ErrConflict otherwise).
func (t *Table[T]) UpdateAt(ctx context.Context, key string, v *T, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	nrev, err := t.kv.Update(ctx, key, b, rev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSeq(err) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("update %s: %w", key, err)
	}
	return nrev, nil
}

// isWrongSeq: a revision conflict, as a single server (10071) or a
// replicated stream (10164) reports it.
func isWrongSeq(err error) bool { return wrongRevision(err) }

// Update applies fn to the current record and writes it back, retrying on
// revision conflicts. fn may return an error to abort (returned as is).
func (t *Table[T]) Update(ctx context.Context, key string, fn func(v *T) error) (*T, uint64, error) {
	for attempt := 0; ; attempt++ {
		v, rev, err := t.Get(ctx, key)
		if err != nil {
			return nil, 0, err
		}
		if err := fn(v); err != nil {
			return nil, 0, err
		}
		nrev, err := t.UpdateAt(ctx, key, v, rev)
		if err == nil {
			return v, nrev, nil
		}
		if !errors.Is(err, ErrConflict) || attempt > 50 {
			return nil, 0, err
		}
	}
}

// Delete removes key. Deleting a missing key is not an error.
func (t *Table[T]) Delete(ctx context.Context, key string) error {
	err := t.kv.Purge(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// Entry is one record of a listing.
type Entry[T any] struct {
	Key      string
	Value    *T
	Revision uint64
}

// List returns every record whose key matches the NATS subject filter
// (e.g. "fn.123456789012.>"); ">" lists all. Order is by key.
//
// On a replicated store the listing comes from a watch, which one replica
// serves; it is checked against the stream leader (the newest revision
// matching filter) and read again while that replica is behind, so a
// listing shows what was written before it (read your writes). While the
// stream has no leader, the replica's listing is returned unchecked; while
// the cluster elects a meta leader (which creates the watch's consumer),
// the watch is tried again (up to 20 s).
func (t *Table[T]) List(ctx context.Context, filter string) ([]Entry[T], error) {
	c, _ := t.kv.(*consistentKV)
	var want uint64
	if c != nil {
		var err error
		if want, err = c.lastRevision(ctx, filter); err != nil && !electing(err) {
			return nil, fmt.Errorf("list %s: %w", filter, err)
		}
		// While the stream elects a leader (no write is acknowledged
		// meanwhile), the replica's listing is taken as it is.
	}
	deadline := time.Now().Add(electionWait)
	for {
		out, newest, err := t.list(ctx, filter)
		if c != nil && err != nil && electing(err) && ctx.Err() == nil && time.Now().Before(deadline) {
			// The watch's consumer is created by the cluster's meta
			// leader: while it is elected (its host was killed), try
			// again, as writes do.
			time.Sleep(250 * time.Millisecond)
			continue
		}
		if err != nil || newest >= want || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// list reads the records matching filter through a watch, and the newest
// revision it saw (deletes included).
func (t *Table[T]) list(ctx context.Context, filter string) ([]Entry[T], uint64, error) {
	w, err := t.kv.Watch(ctx, filter)
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", filter, err)
	}
	defer w.Stop()
	var out []Entry[T]
	var newest uint64
	for e := range w.Updates() {
		if e == nil {
			break
		}
		newest = max(newest, e.Revision())
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		v := new(T)
		if err := json.Unmarshal(e.Value(), v); err != nil {
			return nil, 0, fmt.Errorf("decode %s: %w", e.Key(), err)
		}
		out = append(out, Entry[T]{Key: e.Key(), Value: v, Revision: e.Revision()})
	}
	sortEntries(out)
	return out, newest, nil
}
