package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/nats-io/nats.go"
)

// Members is what placement needs of the membership (cluster.Membership).
type Members interface {
	Self() cluster.Host
	Live() []cluster.Host
	Ranked(key string) []cluster.Host
	Quorate() bool
}

// Runner runs an invocation placed here (invoke.Scheduler).
type Runner interface {
	InvokeHere(ctx context.Context, r *invoke.Request, async bool) (*invoke.Response, error)
}

// Reserver reports a function's reserved concurrency (control.Service).
type Reserver interface {
	Reserved(account, function string) *int
}

// Options configures New.
type Options struct {
	Members  Members
	Conn     *nats.Conn
	Control  Reserver
	Capacity int // invocations this host runs at once before spilling (0 = no bound)
	Logger   *slog.Logger
	// Slack is added to a forwarded invoke's deadline beyond the
	// function's timeout and SetupWait (default 10 s).
	Slack     time.Duration
	SetupWait time.Duration // default 90 s (invoke.Options.SetupWait)
}

// Placement routes invocations between hosts.
type Placement struct {
	o       Options
	log     *slog.Logger
	self    string
	running atomic.Int64
	runner  Runner
	subs    []*nats.Subscription
	wg      sync.WaitGroup
	closing chan struct{}

	forwarded atomic.Uint64 // invocations sent to another host
	served    atomic.Uint64 // invocations other hosts sent here
	spilled   atomic.Uint64 // invocations a full home passed on
	ran       atomic.Uint64 // invocations run on this host
}

// New builds a Placement; Serve starts answering other hosts.
func New(o Options) *Placement {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Slack == 0 {
		o.Slack = 10 * time.Second
	}
	if o.SetupWait == 0 {
		o.SetupWait = 90 * time.Second
	}
	return &Placement{o: o, log: o.Logger, self: o.Members.Self().ID, closing: make(chan struct{})}
}

func invokeSubject(host string) string { return "lp.invoke." + host }

// header names of a forwarded invoke.
const (
	hdrRequest  = "Lp-Request"
	hdrResponse = "Lp-Response"
)

// wireRequest is a forwarded invoke (the payload travels as the body).
type wireRequest struct {
	AccountID     string `json:"a"`
	Region        string `json:"r"`
	Function      string `json:"f"`
	Qualifier     string `json:"q,omitempty"`
	LogTail       bool   `json:"t,omitempty"`
	ClientContext string `json:"c,omitempty"`
	RequestID     string `json:"id"`
	TraceID       string `json:"x,omitempty"`
	Async         bool   `json:"e,omitempty"`
	Reserved      bool   `json:"v,omitempty"`
	StoreLog      bool   `json:"l,omitempty"`
	Deadline      int64  `json:"d"` // unix ms
}

// wireResponse is a forwarded invoke's answer (the payload as the body).
type wireResponse struct {
	Full            bool           `json:"full,omitempty"`
	Status          int            `json:"s,omitempty"`
	FunctionError   string         `json:"fe,omitempty"`
	LogResult       string         `json:"l,omitempty"`
	ExecutedVersion string         `json:"v,omitempty"`
	RequestID       string         `json:"id,omitempty"`
	Host            string         `json:"h,omitempty"`
	LogError        string         `json:"le,omitempty"`
	Err             *control.Error `json:"err,omitempty"`
	ErrText         string         `json:"et,omitempty"`
}

// errFull: the host is at capacity and ran nothing.
var errFull = errors.New("placement: host at capacity")

// HomeKey is the rendezvous key of a function.
func HomeKey(account, function string) string { return account + "/" + function }

// Route implements invoke.Placement.
func (p *Placement) Route(ctx context.Context, r *invoke.Request, cfg *control.Config, local func(context.Context) (*invoke.Response, error)) (*invoke.Response, error) {
	if !p.o.Members.Quorate() {
		return nil, control.TooManyRequests("ConcurrentInvocationLimitExceeded",
			"Rate Exceeded. (host %s does not see a majority of the cluster and admits no invocations until it rejoins; call another host)", p.self)
	}
	reserved := p.o.Control.Reserved(cfg.AccountID, cfg.FunctionName) != nil
	if r.Async() && !reserved {
		// Event invocations run where the queue handed them out.
		if !p.admit(false) {
			return nil, control.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded. (host %s is at its capacity)", p.self)
		}
		defer p.running.Add(-1)
		p.ran.Add(1)
		return local(ctx)
	}
	ranked := p.o.Members.Ranked(HomeKey(cfg.AccountID, cfg.FunctionName))
	for _, h := range ranked {
		if h.ID == p.self {
			if !p.admit(reserved) {
				p.spilled.Add(1)
				continue
			}
			p.ran.Add(1)
			resp, err := local(ctx)
			p.running.Add(-1)
			return resp, err
		}
		resp, err := p.forward(ctx, h, r, cfg, reserved)
		switch {
		case errors.Is(err, errFull):
			p.spilled.Add(1)
			continue
		case errors.Is(err, nats.ErrNoResponders):
			// Gone before membership noticed: nothing ran there.
			p.log.Info("home host did not answer; trying the next", "host", h.ID, "function", cfg.FunctionName)
			continue
		}
		return resp, err
	}
	return nil, control.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded. (every host that could run %s is at its capacity)", cfg.FunctionName)
}

// admit takes one of this host's run slots (reserved invocations are
// bounded by their reservation instead).
func (p *Placement) admit(reserved bool) bool {
	n := p.running.Add(1)
	if reserved || p.o.Capacity <= 0 || n <= int64(p.o.Capacity) {
		return true
	}
	p.running.Add(-1)
	return false
}

// forward sends r to host h and waits for its answer. A timeout is never
// retried: the invocation may have run.
func (p *Placement) forward(ctx context.Context, h cluster.Host, r *invoke.Request, cfg *control.Config, reserved bool) (*invoke.Response, error) {
	wait := time.Duration(cfg.Timeout)*time.Second + p.o.SetupWait + p.o.Slack
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	meta, _ := json.Marshal(wireRequest{
		AccountID: r.AccountID, Region: r.Region, Function: r.Function, Qualifier: r.Qualifier, LogTail: r.LogTail,
		ClientContext: r.ClientContext, RequestID: r.RequestID, TraceID: r.TraceID, Async: r.Async(), Reserved: reserved,
		StoreLog: r.StoreLog, Deadline: deadline.UnixMilli(),
	})
	msg := nats.NewMsg(invokeSubject(h.ID))
	msg.Header.Set(hdrRequest, string(meta))
	msg.Data = r.Payload
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	p.forwarded.Add(1)
	reply, err := p.o.Conn.RequestMsgWithContext(rctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, nats.ErrNoResponders
		}
		return nil, fmt.Errorf("invocation %s forwarded to host %s: no answer (%w); it is not retried, it may have run", r.RequestID, h.ID, err)
	}
	var w wireResponse
	if err := json.Unmarshal([]byte(reply.Header.Get(hdrResponse)), &w); err != nil {
		return nil, fmt.Errorf("invocation %s forwarded to host %s: unreadable answer: %w", r.RequestID, h.ID, err)
	}
	if w.Full {
		return nil, errFull
	}
	if w.Err != nil {
		return nil, w.Err
	}
	if w.ErrText != "" {
		return nil, fmt.Errorf("host %s: %s", h.ID, w.ErrText)
	}
	resp := &invoke.Response{Status: w.Status, Payload: reply.Data, FunctionError: w.FunctionError, LogResult: w.LogResult,
		ExecutedVersion: w.ExecutedVersion, RequestID: w.RequestID, Host: w.Host}
	if w.LogError != "" {
		resp.SetLogError(errors.New(w.LogError))
	}
	return resp, nil
}

// Serve answers invocations other hosts forward here, running them on r.
func (p *Placement) Serve(r Runner) error {
	p.runner = r
	sub, err := p.o.Conn.Subscribe(invokeSubject(p.self), func(m *nats.Msg) {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(m) }()
	})
	if err != nil {
		return fmt.Errorf("subscribe to forwarded invocations: %w", err)
	}
	p.subs = append(p.subs, sub)
	return nil
}

func (p *Placement) serve(m *nats.Msg) {
	var w wireRequest
	reply := func(wr wireResponse, body []byte) {
		out := nats.NewMsg(m.Reply)
		b, _ := json.Marshal(wr)
		out.Header.Set(hdrResponse, string(b))
		out.Data = body
		if err := m.RespondMsg(out); err != nil {
			p.log.Warn("answering a forwarded invocation failed", "requestId", w.RequestID, "err", err)
		}
	}
	if err := json.Unmarshal([]byte(m.Header.Get(hdrRequest)), &w); err != nil {
		reply(wireResponse{ErrText: "unreadable forwarded invocation: " + err.Error()}, nil)
		return
	}
	if !p.admit(w.Reserved) {
		reply(wireResponse{Full: true}, nil)
		return
	}
	defer p.running.Add(-1)
	p.served.Add(1)
	p.ran.Add(1)
	ctx, cancel := context.WithDeadline(context.Background(), time.UnixMilli(w.Deadline))
	defer cancel()
	resp, err := p.runner.InvokeHere(ctx, &invoke.Request{
		AccountID: w.AccountID, Region: w.Region, Function: w.Function, Qualifier: w.Qualifier,
		InvocationType: invoke.RequestResponse, Payload: m.Data, LogTail: w.LogTail, ClientContext: w.ClientContext,
		RequestID: w.RequestID, TraceID: w.TraceID, StoreLog: w.StoreLog,
	}, w.Async)
	if err != nil {
		var ce *control.Error
		if errors.As(err, &ce) {
			reply(wireResponse{Err: ce}, nil)
		} else {
			reply(wireResponse{ErrText: err.Error()}, nil)
		}
		return
	}
	wr := wireResponse{Status: resp.Status, FunctionError: resp.FunctionError, LogResult: resp.LogResult,
		ExecutedVersion: resp.ExecutedVersion, RequestID: resp.RequestID, Host: resp.Host}
	if le := resp.LogError(); le != nil {
		wr.LogError = le.Error()
	}
	reply(wr, resp.Payload)
}

// Stats counts invocations sent to other hosts, served for them, passed
// on by a full home, and run here (Event ones included).
func (p *Placement) Stats() (forwarded, served, spilled, ran uint64) {
	return p.forwarded.Load(), p.served.Load(), p.spilled.Load(), p.ran.Load()
}

// Close stops answering and waits for the invocations being served.
func (p *Placement) Close() {
	for _, s := range p.subs {
		_ = s.Unsubscribe()
	}
	p.wg.Wait()
}
