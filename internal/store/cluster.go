package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterOptions makes the embedded server one voting member of a
// JetStream cluster of embedded servers (serve --cluster-listen,
// --cluster-peers).
type ClusterOptions struct {
	// ServerName is unique in the cluster (JetStream requires it):
	// "lp-" + the host id.
	ServerName string
	// Listen is the route listener, host:port (the other servers connect
	// to it); "" = not clustered.
	Listen string
	// Peers are the other voting servers' route addresses, host:port.
	Peers []string
	// ClientListen is the client listener, host:port; default
	// 127.0.0.1:0 (loopback, a free port): an embedded server that does
	// not listen for clients never starts routing. Set it to a reachable
	// address for hosts that join with --nats-url.
	ClientListen string
}

// clusterName is the NATS cluster name of every lambdaplane cluster.
const clusterName = "lambdaplane"

// apply fills o's cluster settings.
func (c ClusterOptions) apply(o *server.Options) error {
	if c.ServerName == "" {
		return errors.New("store: a clustered store needs a server name (serve --host-id)")
	}
	host, port, err := splitHostPort(c.Listen, "--cluster-listen")
	if err != nil {
		return err
	}
	o.ServerName = c.ServerName
	o.Cluster = server.ClusterOpts{Name: clusterName, Host: host, Port: port, NoAdvertise: true, PoolSize: -1}
	var routes []*url.URL
	for _, p := range c.Peers {
		if _, _, err := splitHostPort(p, "--cluster-peers"); err != nil {
			return err
		}
		routes = append(routes, &url.URL{Scheme: "nats", Host: p})
	}
	o.Routes = routes
	cl := c.ClientListen
	if cl == "" {
		cl = "127.0.0.1:0"
	}
	chost, cport, err := splitHostPort(cl, "--cluster-client-listen")
	if err != nil {
		return err
	}
	if cport == 0 {
		cport = server.RANDOM_PORT
	}
	o.DontListen = false
	o.Host, o.Port = chost, cport
	o.NoAuthUser = ""
	return nil
}

func splitHostPort(addr, flag string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q is not host:port (e.g. 10.20.0.1:6222): %v", flag, addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: port %q is not a number 0-65535", flag, addr, ps)
	}
	return host, port, nil
}

// Replicas is the replica count this store gives every bucket and stream
// it creates (other packages pass it to the streams they create).
func (s *Store) Replicas() int { return s.replicas }

// Clustered reports whether the embedded server is a cluster member.
func (s *Store) Clustered() bool { return s.clustered }

// ClientURL is the embedded server's client listener (nats://host:port),
// "" when it listens for none.
func (s *Store) ClientURL() string {
	if s.srv == nil || !s.clustered {
		return ""
	}
	return s.srv.ClientURL()
}

// ServerName is the embedded server's name, "" for an external one.
func (s *Store) ServerName() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.Name()
}

// settle waits until JetStream answers (a clustered server must first
// find its peers and elect a meta leader) and picks the replica count.
func (s *Store) settle(ctx context.Context, o Options) error {
	if s.srv != nil && s.clustered {
		voting := 1 + len(o.Cluster.Peers)
		t := time.Now()
		last := time.Time{}
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := s.js.AccountInfo(actx)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Since(t) > 5*time.Minute {
				return fmt.Errorf("the store's cluster did not form within 5 minutes (peers %s): %w; check --cluster-peers and that port %s is open between the hosts", strings.Join(o.Cluster.Peers, ","), err, o.Cluster.Listen)
			}
			if time.Since(last) > 5*time.Second {
				last = time.Now()
				s.log.Info("waiting for the store's cluster to form", "peers", o.Cluster.Peers, "waited", time.Since(t).Round(time.Second), "err", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		s.replicas = min(3, voting)
	}
	if o.Replicas > 0 {
		s.replicas = o.Replicas
	}
	if s.replicas == 0 && o.URL != "" {
		// Join an existing cluster at the replica count its buckets have.
		if si, err := s.js.Stream(ctx, "KV_functions"); err == nil {
			s.replicas = si.CachedInfo().Config.Replicas
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("read the store's functions bucket: %w", err)
		}
	}
	if s.replicas == 0 {
		s.replicas = 1
	}
	return nil
}

// replicated is the JetStream context every package gets from the store:
// a stream, bucket or object store created without a replica count gets
// the store's (so no package can create a single-copy stream on a
// cluster by forgetting to ask).
//
// Every bucket it opens reads from its stream leader and retries writes
// through an election (consistentKV).
type replicated struct {
	jetstream.JetStream
	n  int
	nc *nats.Conn
}

func (r replicated) consistent(kv jetstream.KeyValue, err error) (jetstream.KeyValue, error) {
	if err != nil {
		return kv, err
	}
	return newConsistentKV(kv, r.nc, r.JetStream), nil
}

func (r replicated) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return r.consistent(retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return r.JetStream.KeyValue(ctx, bucket) }))
}

func (r replicated) CreateStream(ctx context.Context, c jetstream.StreamConfig) (jetstream.Stream, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return r.JetStream.CreateStream(ctx, c) })
}

func (r replicated) CreateOrUpdateStream(ctx context.Context, c jetstream.StreamConfig) (jetstream.Stream, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return r.JetStream.CreateOrUpdateStream(ctx, c) })
}

func (r replicated) UpdateStream(ctx context.Context, c jetstream.StreamConfig) (jetstream.Stream, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return r.JetStream.UpdateStream(ctx, c) })
}

func (r replicated) CreateKeyValue(ctx context.Context, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return r.consistent(retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return r.JetStream.CreateKeyValue(ctx, c) }))
}

func (r replicated) CreateOrUpdateKeyValue(ctx context.Context, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return r.consistent(retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return r.JetStream.CreateOrUpdateKeyValue(ctx, c)
	}))
}

func (r replicated) UpdateKeyValue(ctx context.Context, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return r.consistent(retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return r.JetStream.UpdateKeyValue(ctx, c) }))
}

func (r replicated) CreateObjectStore(ctx context.Context, c jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return retry(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) { return r.JetStream.CreateObjectStore(ctx, c) })
}

func (r replicated) CreateOrUpdateObjectStore(ctx context.Context, c jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	if c.Replicas == 0 {
		c.Replicas = r.n
	}
	return retry(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return r.JetStream.CreateOrUpdateObjectStore(ctx, c)
	})
}

// retry repeats a stream or bucket creation that timed out: while a
// cluster forms or elects (a member just started, a peer was killed) the
// first requests can go unanswered for seconds. Each attempt has 10 s,
// all of them together 2 minutes (or ctx).
func retry[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || !transient(err) {
			return v, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// transient: the cluster did not answer in time (no meta or stream leader
// yet), as opposed to a refusal.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 10008: JetStream temporarily unavailable; 503s while electing.
		return apiErr.ErrorCode == 10008 || apiErr.Code == 503
	}
	return false
}
