// Package runtimeapi implements the AWS Lambda Runtime API (version
// 2018-06-01) for one execution environment.
//
// A Server serves exactly one runtime process. The invoke layer hands it one
// invocation at a time with Invoke, which blocks until the runtime posts a
// response or an error for it. The runtime picks invocations up by long-polling
// GET /2018-06-01/runtime/invocation/next; the hand-off between the two is a
// channel wake-up, never a poll.
//
// Behaviour follows AWS and the AWS Lambda runtime interface emulator:
//
//   - GET  /2018-06-01/runtime/invocation/next              200, event + Lambda-Runtime-* headers
//   - POST /2018-06-01/runtime/invocation/{id}/response     202; 413 when over MaxResponseBytes
//   - POST /2018-06-01/runtime/invocation/{id}/error        202
//   - POST /2018-06-01/runtime/init/error                   202, delivered on InitError
//   - unknown or already-answered request id                400 InvalidRequestID
//   - GET /next while an invocation is still unanswered     403 InvalidStateTransition
//   - unknown path 404, wrong method 405 (JSON bodies)
package runtimeapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxResponseBytes is the largest response payload a runtime may post
// for a synchronous invocation. AWS documents the limit as 6 MB and enforces
// 6 MiB + 100 bytes (the figure in its error message); so do we.
const DefaultMaxResponseBytes = 6*1024*1024 + 100

// fallbackTimeout is the deadline given to the runtime when neither the
// Invocation nor the Invoke context carries one: the longest Lambda timeout.
const fallbackTimeout = 900 * time.Second

// ErrBusy is returned by Invoke while another invocation is in flight. An
// invocation whose Invoke was cancelled after the runtime received it stays in
// flight until the runtime answers it.
var ErrBusy = errors.New("runtimeapi: an invocation is already in flight")

// ErrUndelivered accompanies the error of an Invoke that ended before the
// runtime fetched the invocation: it never started, so it may be retried on
// another environment.
var ErrUndelivered = errors.New("runtimeapi: the runtime never fetched the invocation")

// ErrClosed is returned by Invoke after Close.
var ErrClosed = errors.New("runtimeapi: server closed")

// Invocation is one event handed to the runtime.
type Invocation struct {
	RequestID       string
	FunctionARN     string
	TraceID         string
	ClientContext   string // JSON, passed verbatim in Lambda-Runtime-Client-Context
	CognitoIdentity string // JSON, passed verbatim in Lambda-Runtime-Cognito-Identity
	Payload         []byte
	// Deadline is sent as Lambda-Runtime-Deadline-Ms. If zero, the deadline
	// of the Invoke context is used, or now + 900 s if it has none.
	Deadline time.Time
	// Stream, when set, receives a response the runtime streams
	// (Lambda-Runtime-Function-Response-Mode: streaming) as it arrives;
	// without it a streamed response is buffered like any other.
	Stream StreamSink
}

// StreamSink receives a streamed response while the runtime sends it.
type StreamSink interface {
	// Begin is called once, before the first Write, with the response's
	// Content-Type (application/octet-stream when the runtime set none).
	Begin(contentType string)
	// Write is called with each piece of the body as it arrives.
	Write(p []byte) (int, error)
}

// MaxStreamBytes is the largest response a function may stream (Lambda's
// 20 MB soft limit for response streaming).
const MaxStreamBytes = 20 << 20

// Result is the runtime's answer to one invocation: a Payload on success, or
// Err when the runtime reported a function error (or the response was too
// large).
type Result struct {
	Payload []byte
	Err     *FunctionError
	// Streamed: the body went to Invocation.Stream (Payload is empty).
	Streamed bool
}

// Options configure a Server.
type Options struct {
	// MaxResponseBytes caps response (and error) bodies posted by the
	// runtime; DefaultMaxResponseBytes if zero.
	MaxResponseBytes int
	// Logger receives diagnostics about misbehaving runtimes; discarded if nil.
	Logger *slog.Logger
}

// invocation states, guarded by Server.mu.
const (
	stateQueued    = iota // waiting for the runtime's GET /next
	stateDelivered        // returned by GET /next, awaiting an answer
	stateAnswering        // a response or error body is being read
)

type pending struct {
	inv        *Invocation
	deadlineMs string
	state      int
	abandoned  bool         // Invoke gave up (ctx done); the answer is dropped
	done       chan *Result // buffered 1; receives exactly one result
}

// Server is the Runtime API of one execution environment.
type Server struct {
	maxResp int
	log     *slog.Logger
	hs      *http.Server

	ready     chan struct{}
	readyOnce sync.Once
	initErr   chan *FunctionError // buffered 1; first init error wins
	initFail  *FunctionError      // the first init error; later Invokes fail with it (guarded by mu)

	closed    chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	cur  *pending      // the invocation in flight, nil when idle
	wake chan struct{} // closed (and replaced) when an invocation is queued
}

// New returns a Server; call Serve to start it.
func New(o Options) *Server {
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		maxResp: o.MaxResponseBytes,
		log:     o.Logger,
		ready:   make(chan struct{}),
		initErr: make(chan *FunctionError, 1),
		closed:  make(chan struct{}),
		wake:    make(chan struct{}),
	}
	s.hs = &http.Server{
		Handler: s,
		// No read/write/idle timeouts: GET /next legitimately blocks for as
		// long as the environment stays warm and idle.
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Serve serves the Runtime API on l until Close; it then returns nil.
func (s *Server) Serve(l net.Listener) error {
	err := s.hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Ready is closed when the runtime first calls GET /next, i.e. when its
// initialisation has finished.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// InitError receives the first error the runtime posts to
// /runtime/init/error. The environment must then be discarded.
func (s *Server) InitError() <-chan *FunctionError { return s.initErr }

// Close stops the server, ends pending long-polls and makes a blocked Invoke
// return ErrClosed. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.hs.Close()
	})
	return err
}

// Invoke hands inv to the runtime and waits for its answer. Only one
// invocation may be in flight: otherwise Invoke returns ErrBusy. If ctx ends
// first Invoke returns ctx.Err() — joined with ErrUndelivered if the runtime
// had not yet received the invocation; otherwise the environment should be
// destroyed (like AWS does after a timeout). A function error is a successful Invoke
// whose Result has Err set.
func (s *Server) Invoke(ctx context.Context, inv *Invocation) (*Result, error) {
	return s.InvokeWhile(ctx, inv, nil, nil)
}

// InvokeWhile is Invoke that also stops waiting when alive is closed (the
// runtime process died), returning gone (joined with ErrUndelivered if the
// runtime never fetched the invocation). A nil alive never closes.
func (s *Server) InvokeWhile(ctx context.Context, inv *Invocation, alive <-chan struct{}, gone error) (*Result, error) {
	select {
	case <-s.closed:
		return nil, ErrClosed
	default:
	}
	deadline := inv.Deadline
	if deadline.IsZero() {
		var ok bool
		if deadline, ok = ctx.Deadline(); !ok {
			deadline = time.Now().Add(fallbackTimeout)
		}
	}
	p := &pending{
		inv:        inv,
		deadlineMs: strconv.FormatInt(deadline.UnixMilli(), 10),
		done:       make(chan *Result, 1),
	}

	s.mu.Lock()
	if fe := s.initFail; fe != nil {
		// The runtime failed to initialise: it will never fetch this.
		s.mu.Unlock()
		return &Result{Err: fe}, nil
	}
	if s.cur != nil {
		s.mu.Unlock()
		return nil, ErrBusy
	}
	s.cur = p
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()

	select {
	case res := <-p.done:
		return res, nil
	case <-ctx.Done():
		return s.abandon(p, ctx.Err())
	case <-alive:
		return s.abandon(p, gone)
	case <-s.closed:
		return s.abandon(p, ErrClosed)
	}
}

// abandon withdraws p after its Invoke stopped waiting. A queued invocation is
// removed (err joined with ErrUndelivered); one the runtime already holds
// stays in flight until answered.
func (s *Server) abandon(p *pending, err error) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case res := <-p.done: // answered in the meantime
		return res, nil
	default:
	}
	if s.cur == p {
		if p.state == stateQueued {
			s.cur = nil
			return nil, errors.Join(ErrUndelivered, err)
		}
		p.abandoned = true
	}
	return nil, err
}

// finish records the answer to p and frees the slot. Caller holds s.mu.
func (s *Server) finish(p *pending, res *Result) {
	if s.cur == p {
		s.cur = nil
	}
	if p.abandoned {
		s.log.Warn("runtime answered an abandoned invocation", "request_id", p.inv.RequestID)
	}
	p.done <- res
}
