package placement

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/nats-io/nats.go/jetstream"
)

// The direct path: a forwarded synchronous invoke goes straight to the
// home's forward listener (cluster.Host.Forward) over a kept-alive HTTP
// connection: one TCP hop each way, where NATS request/reply crosses the
// sender's store server, a route and the home's store server. The wire
// is the NATS path's (wireRequest in the Lp-Request header, the payload as
// the body; wireResponse in Lp-Response), with the same meaning: a home
// that refuses the connection ran nothing (the next host is tried, as
// for "no responders"); any failure after the request went out is
// returned, never replayed. Every request carries the cluster's forward
// secret (Lp-Secret), kept in the store, so only members reach the
// listener's runner. A host without a Forward address is reached over
// NATS.

const (
	hdrSecret = "Lp-Secret"
	// forwardPath is the listener's only path.
	forwardPath = "/lp/invoke"
	// maxForwardBody bounds a forwarded payload (a synchronous invoke's
	// 6 MB and then some).
	maxForwardBody = invoke.MaxSyncPayload + 1<<20
)

// secretBucket keeps the cluster's forward secret (key "forward").
const secretBucket = "cluster_secret"

// ForwardSecret returns the cluster's forward secret, making it on first
// use (the first host to store it wins; every host reads the same).
func ForwardSecret(ctx context.Context, js jetstream.JetStream, replicas int) (string, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: secretBucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return "", fmt.Errorf("open bucket %s: %w", secretBucket, err)
	}
	for attempt := 0; ; attempt++ {
		if e, err := kv.Get(ctx, "forward"); err == nil {
			return string(e.Value()), nil
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return "", fmt.Errorf("read the cluster's forward secret: %w", err)
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		s := hex.EncodeToString(b[:])
		if _, err := kv.Create(ctx, "forward", []byte(s)); err == nil {
			return s, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) || attempt > 20 {
			return "", fmt.Errorf("store the cluster's forward secret: %w", err)
		}
		// Another host stored it first; a replica may not have it yet.
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func newForwardClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// forwardDirect is forward over h's forward listener.
func (p *Placement) forwardDirect(ctx context.Context, h cluster.Host, meta []byte, payload []byte, requestID string) (*wireResponse, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+h.Forward+forwardPath, bytes.NewReader(payload))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set(hdrRequest, string(meta))
	req.Header.Set(hdrSecret, p.o.Secret)
	resp, err := p.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, nil, errGone // nothing was sent: nothing ran
		}
		return nil, nil, fmt.Errorf("invocation %s forwarded to host %s: no answer (%w); it is not retried, it may have run", requestID, h.ID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBody))
	if err != nil {
		return nil, nil, fmt.Errorf("invocation %s forwarded to host %s: answer cut short (%w); it may have run", requestID, h.ID, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("invocation %s forwarded to host %s: status %d: %s", requestID, h.ID, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var w wireResponse
	if err := json.Unmarshal([]byte(resp.Header.Get(hdrResponse)), &w); err != nil {
		return nil, nil, fmt.Errorf("invocation %s forwarded to host %s: unreadable answer: %w", requestID, h.ID, err)
	}
	return &w, body, nil
}

// ServeDirect answers forwarded invocations on ln (this host's
// cluster.Host.Forward) until Close; Serve must have set the runner.
func (p *Placement) ServeDirect(ln net.Listener) {
	p.http = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		if err := p.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("the forward listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

func (p *Placement) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != forwardPath || r.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if p.o.Secret == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(hdrSecret)), []byte(p.o.Secret)) != 1 {
		http.Error(w, "this listener answers only hosts of its cluster", http.StatusForbidden)
		return
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForwardBody))
	if err != nil {
		http.Error(w, "reading the payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	wr, body := p.run([]byte(r.Header.Get(hdrRequest)), payload)
	b, _ := json.Marshal(wr)
	w.Header().Set(hdrResponse, string(b))
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(body)
}

// closeDirect stops the forward listener, waiting for the invocations
// it is serving.
func (p *Placement) closeDirect() {
	if p.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = p.http.Shutdown(ctx)
}

// errWire converts a runner's error for the wire.
func errWire(err error) wireResponse {
	var ce *control.Error
	if errors.As(err, &ce) {
		return wireResponse{Err: ce}
	}
	return wireResponse{ErrText: err.Error()}
}
