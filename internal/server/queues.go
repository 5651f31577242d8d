package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/destinations"
	"github.com/lambdaplane/lambdaplane/internal/esm"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/lineage"
	"github.com/lambdaplane/lambdaplane/internal/sqs"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// triggers is what invokes functions from queues and sends what async
// invocations leave behind: event source mappings and their pollers,
// event invoke configs and the destinations dispatcher, on the queue
// engine.
type triggers struct {
	queues   *sqs.Queues
	esm      *esm.Service
	configs  *destinations.Configs
	dispatch *destinations.Dispatcher
	placer   *esm.Placer
	inv      *schedInvoker
}

// openTriggers builds the parts that do not need the scheduler; start
// binds it and starts the pollers.
func openTriggers(ctx context.Context, st *store.Store, region string, ctl *control.Service, roles *iam.Roles, log *slog.Logger) (*triggers, error) {
	t := &triggers{inv: &schedInvoker{}}
	var err error
	if t.queues, err = sqs.New(ctx, sqs.Config{Store: st, Region: region, Logger: log}); err != nil {
		return nil, err
	}
	eq := esmQueues{t.queues}
	if t.esm, err = esm.New(ctx, esm.Options{Store: st, Queues: eq, Functions: ctl, Roles: roles, Logger: log}); err != nil {
		return nil, err
	}
	if t.configs, err = destinations.NewConfigs(ctx, destinations.Options{Store: st, Functions: ctl, Roles: roles, Logger: log}); err != nil {
		return nil, err
	}
	t.dispatch = &destinations.Dispatcher{Configs: t.configs, Functions: ctl, Queues: destQueues{t.queues}, Invoker: t.inv, Logger: log}
	return t, nil
}

// start binds the scheduler and starts placing pollers (hostID names this
// server in the mappings' leases).
func (t *triggers) start(ctx context.Context, st *store.Store, sched *invoke.Scheduler, ctl *control.Service, hostID string, log *slog.Logger) error {
	t.inv.s = sched
	if hostID == "" {
		hostID = "local"
	}
	p, err := esm.StartPlacer(ctx, st, esm.PlacerOptions{Service: t.esm, Queues: esmQueues{t.queues}, Functions: ctl, Invoker: t.inv, HostID: hostID, Logger: log})
	if err != nil {
		return err
	}
	t.placer = p
	return nil
}

// close stops the pollers (before the scheduler closes) and gives their
// leases back.
func (t *triggers) close() {
	if t == nil {
		return
	}
	if t.placer != nil {
		t.placer.Close()
	}
	if t.queues != nil {
		t.queues.Close()
	}
}

// esmQueues adapts the queue engine to esm.Queues.
type esmQueues struct{ q *sqs.Queues }

func noQueue(err error) error {
	var e *sqs.Error
	if errors.As(err, &e) && e.Kind == sqs.KindQueueDoesNotExist {
		return fmt.Errorf("%w: %v", esm.ErrNoQueue, err)
	}
	return err
}

func (a esmQueues) VisibilityTimeout(ctx context.Context, arn string) (time.Duration, error) {
	rec, err := a.q.Lookup(ctx, arn)
	if err != nil {
		return 0, noQueue(err)
	}
	return rec.VisibilityTimeout(), nil
}

func (a esmQueues) Receive(ctx context.Context, arn string, max int, wait time.Duration) ([]esm.Message, error) {
	ms, err := a.q.Receive(ctx, arn, max, -1, wait)
	if err != nil {
		return nil, noQueue(err)
	}
	out := make([]esm.Message, len(ms))
	for i, m := range ms {
		attrs := make(map[string]esm.MessageAttribute, len(m.MessageAttributes))
		for k, v := range m.MessageAttributes {
			ma := esm.MessageAttribute{DataType: v.DataType, BinaryValue: v.BinaryValue, StringListValues: v.StringListValues, BinaryListValues: v.BinaryListValues}
			if !strings.HasPrefix(v.DataType, "Binary") {
				s := v.StringValue
				ma.StringValue = &s
			}
			attrs[k] = ma
		}
		out[i] = esm.Message{MessageID: m.MessageID, ReceiptHandle: m.ReceiptHandle, Body: m.Body, MD5OfBody: m.MD5OfBody,
			Attributes: m.Attributes, MessageAttributes: attrs}
	}
	return out, nil
}

func (a esmQueues) Delete(ctx context.Context, arn string, handles []string) error {
	return a.q.DeleteBatch(ctx, arn, handles)
}

// destQueues adapts the queue engine to destinations.Queues: a send from
// another account than the queue's needs the queue's Policy.
type destQueues struct{ q *sqs.Queues }

func (a destQueues) Send(ctx context.Context, sender, arn, body string, attrs map[string]destinations.MessageAttribute) error {
	if !a.q.Allowed(ctx, arn, sqs.Principal{Account: sender, Service: "lambda.amazonaws.com"}, "sqs:SendMessage") {
		return fmt.Errorf("account %s may not send to %s (the queue does not exist, or its Policy does not allow sqs:SendMessage)", sender, arn)
	}
	in := sqs.SendInput{Body: body, SenderID: sender}
	if h := lineage.Header(ctx); h != "" {
		in.SystemAttributes = map[string]sqs.MessageAttributeValue{"AWSTraceHeader": {DataType: "String", StringValue: h}}
	}
	if len(attrs) > 0 {
		in.MessageAttributes = make(map[string]sqs.MessageAttributeValue, len(attrs))
		for k, v := range attrs {
			in.MessageAttributes[k] = sqs.MessageAttributeValue{DataType: v.DataType, StringValue: v.StringValue}
		}
	}
	_, err := a.q.Send(ctx, arn, in)
	return err
}

// schedInvoker invokes functions for pollers and destinations through the
// scheduler (bound once it exists).
type schedInvoker struct{ s *invoke.Scheduler }

func (i *schedInvoker) Invoke(ctx context.Context, account, region, function, qualifier string, payload []byte) ([]byte, string, error) {
	resp, err := i.s.Invoke(ctx, &invoke.Request{AccountID: account, Region: region, Function: function, Qualifier: qualifier,
		InvocationType: invoke.RequestResponse, Payload: payload, TraceID: lineage.Header(ctx), StoreLog: true})
	if err != nil {
		return nil, "", err
	}
	if le := resp.LogError(); le != nil {
		// The batch is deleted next only if its log is stored: it
		// returns to the queue instead and runs again.
		return nil, "", fmt.Errorf("storing the log of invocation %s: %w", resp.RequestID, le)
	}
	return resp.Payload, resp.FunctionError, nil
}

func (i *schedInvoker) InvokeEvent(ctx context.Context, account, region, function string, payload []byte) error {
	_, err := i.s.Invoke(ctx, &invoke.Request{AccountID: account, Region: region, Function: function,
		InvocationType: invoke.Event, Payload: payload, TraceID: lineage.Header(ctx)})
	return err
}

// QueueEngine exposes the queue engine (tests).
func (s *Server) QueueEngine() *sqs.Queues { return s.triggers.queues }

// Placer exposes the event source mappings' placer (tests).
func (s *Server) Placer() *esm.Placer { return s.triggers.placer }
