package placement

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/nats-io/nats.go/jetstream"
)

// The direct path: a forwarded synchronous invoke goes straight to the
// home's forward listener (cluster.Host.Forward) over a kept-alive TCP
// connection: one hop each way, where NATS request/reply crosses the
// sender's store server, a route and the home's store server. A
// connection starts with the cluster's forward secret (kept in the store,
// so only members reach the runner) and then carries one invocation at a
// time, each way a frame: two big-endian uint32 lengths, the wireRequest
// (or wireResponse) JSON, the payload. Plain frames rather than HTTP: a
// round trip between two processes here costs ~30 us on TCP and ~160 us
// through net/http. The meaning is the NATS path's: a home that refuses
// the connection ran nothing (the next host is tried, as for "no
// responders"); any failure after the request went out is returned, never
// replayed. A connection taken from the idle pool is first checked for a
// close the home sent meanwhile, so a restart of the home never turns
// into such a failure. A host without a Forward address is reached over
// NATS.

const (
	// maxFrameMeta bounds a frame's JSON part.
	maxFrameMeta = 64 << 10
	// maxForwardBody bounds a forwarded payload (a synchronous invoke's
	// 6 MB and then some).
	maxForwardBody = invoke.MaxSyncPayload + 1<<20
	// maxIdlePerHost bounds the kept-alive connections to one host.
	maxIdlePerHost = 64
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

// frameConn is one kept-alive connection of the direct path.
type frameConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// writeFrame writes one frame and flushes it.
func writeFrame(w *bufio.Writer, meta, body []byte) error {
	var n [8]byte
	binary.BigEndian.PutUint32(n[:4], uint32(len(meta)))
	binary.BigEndian.PutUint32(n[4:], uint32(len(body)))
	w.Write(n[:])
	w.Write(meta)
	w.Write(body)
	return w.Flush()
}

// readFrame reads one frame.
func readFrame(r *bufio.Reader) (meta, body []byte, err error) {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, err
	}
	ml, bl := binary.BigEndian.Uint32(n[:4]), binary.BigEndian.Uint32(n[4:])
	if ml > maxFrameMeta || bl > maxForwardBody {
		return nil, nil, fmt.Errorf("frame of %d+%d bytes is over the bound", ml, bl)
	}
	buf := make([]byte, int(ml)+int(bl))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, nil, err
	}
	return buf[:ml], buf[ml:], nil
}

// conns is the direct path's pool of idle connections, by address.
type conns struct {
	mu   sync.Mutex
	idle map[string][]*frameConn
}

// get returns an idle connection to addr still open, or dials one (with
// the secret sent first). A dial error means nothing was sent.
func (p *Placement) getConn(ctx context.Context, addr string) (*frameConn, error) {
	for {
		p.pool.mu.Lock()
		l := p.pool.idle[addr]
		var fc *frameConn
		if n := len(l); n > 0 {
			fc, p.pool.idle[addr] = l[n-1], l[:n-1]
		}
		p.pool.mu.Unlock()
		if fc == nil {
			break
		}
		// A close (or anything) the home sent while the connection was
		// idle is there to read at once; a live one times out at once.
		_ = fc.c.SetReadDeadline(time.Now())
		if _, err := fc.r.Peek(1); err != nil && errors.Is(err, netTimeout) {
			_ = fc.c.SetReadDeadline(time.Time{})
			return fc, nil
		}
		fc.c.Close()
	}
	d := net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	fc := &frameConn{c: c, r: bufio.NewReaderSize(c, 32<<10), w: bufio.NewWriterSize(c, 32<<10)}
	if err := writeFrame(fc.w, []byte(p.o.Secret), nil); err != nil {
		c.Close()
		return nil, err
	}
	return fc, nil
}

// netTimeout matches a deadline's error (os.ErrDeadlineExceeded).
var netTimeout = timeoutErr{}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "timeout" }
func (timeoutErr) Is(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *Placement) putConn(addr string, fc *frameConn) {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	if p.pool.idle == nil {
		p.pool.idle = map[string][]*frameConn{}
	}
	if len(p.pool.idle[addr]) >= maxIdlePerHost {
		fc.c.Close()
		return
	}
	p.pool.idle[addr] = append(p.pool.idle[addr], fc)
}

// forwardDirect is forward over h's forward listener.
func (p *Placement) forwardDirect(ctx context.Context, h cluster.Host, meta []byte, payload []byte, requestID string) (*wireResponse, []byte, error) {
	fc, err := p.getConn(ctx, h.Forward)
	if err != nil {
		return nil, nil, errGone // nothing was sent: nothing ran
	}
	if d, ok := ctx.Deadline(); ok {
		_ = fc.c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = fc.c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeFrame(fc.w, meta, payload); err != nil {
		fc.c.Close()
		return nil, nil, fmt.Errorf("invocation %s forwarded to host %s: sending it failed (%w); it is not retried, it may have run", requestID, h.ID, err)
	}
	rmeta, body, err := readFrame(fc.r)
	if err != nil {
		fc.c.Close()
		return nil, nil, fmt.Errorf("invocation %s forwarded to host %s: no answer (%w); it is not retried, it may have run", requestID, h.ID, err)
	}
	var w wireResponse
	if err := json.Unmarshal(rmeta, &w); err != nil {
		fc.c.Close()
		return nil, nil, fmt.Errorf("invocation %s forwarded to host %s: unreadable answer: %w", requestID, h.ID, err)
	}
	if stop() {
		_ = fc.c.SetDeadline(time.Time{})
		p.putConn(h.Forward, fc)
	} else {
		fc.c.Close()
	}
	return &w, body, nil
}

// ServeDirect answers forwarded invocations on ln (this host's
// cluster.Host.Forward) until Close; Serve must have set the runner.
func (p *Placement) ServeDirect(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c, true)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.track(c, false)
				p.serveConn(c)
			}()
		}
	}()
}

// track keeps the open forward connections, so Close can end the idle
// ones.
func (p *Placement) track(c net.Conn, open bool) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.open == nil {
		p.open = map[net.Conn]bool{}
	}
	if open {
		p.open[c] = false
	} else {
		delete(p.open, c)
		c.Close()
	}
}

// busy marks c as running an invocation (Close waits for it) or idle;
// false: the listener is closing, c is to end.
func (p *Placement) busy(c net.Conn, b bool) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	p.open[c] = b
	return !p.closingDirect
}

func (p *Placement) serveConn(c net.Conn) {
	r, w := bufio.NewReaderSize(c, 32<<10), bufio.NewWriterSize(c, 32<<10)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	secret, _, err := readFrame(r)
	if err != nil || p.o.Secret == "" || subtle.ConstantTimeCompare(secret, []byte(p.o.Secret)) != 1 {
		p.log.Warn("refused a forward connection without the cluster's secret", "from", c.RemoteAddr().String())
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	for {
		meta, payload, err := readFrame(r)
		if err != nil {
			return
		}
		if !p.busy(c, true) {
			return // closing: the sender sees the connection drop
		}
		wr, body := p.run(meta, payload)
		b, _ := json.Marshal(wr)
		err = writeFrame(w, b, body)
		if !p.busy(c, false) || err != nil {
			return
		}
	}
}

// closeDirect stops the forward listener and ends the idle forward
// connections; those running an invocation end after answering.
func (p *Placement) closeDirect() {
	if p.ln == nil {
		return
	}
	_ = p.ln.Close()
	p.connMu.Lock()
	p.closingDirect = true
	for c, busy := range p.open {
		if !busy {
			_ = c.Close()
		}
	}
	p.connMu.Unlock()
	p.pool.mu.Lock()
	for _, l := range p.pool.idle {
		for _, fc := range l {
			fc.c.Close()
		}
	}
	p.pool.idle = nil
	p.pool.mu.Unlock()
}

// errWire converts a runner's error for the wire.
func errWire(err error) wireResponse {
	var ce *control.Error
	if errors.As(err, &ce) {
		return wireResponse{Err: ce}
	}
	return wireResponse{ErrText: err.Error()}
}
