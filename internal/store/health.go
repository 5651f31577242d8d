package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// A full disk stops the embedded JetStream in two ways, and neither heals
// by itself when space returns:
//
//   - a stream that fails to write a message (ENOSPC) records the error
//     and refuses every later write, without answering the publisher (who
//     sees "nats: timeout"), until the stream is loaded again;
//   - some write paths shut JetStream down altogether ("JetStream out of
//     space, will be DISABLED").
//
// Stalled reports either; RestartJetStream loads every stream again from
// disk (what a server restart would do, without one). Watches and pull
// consumers of the store's connection carry on: ordered consumers (KV
// watches) reset themselves once their heartbeats stop, within seconds.

// publishAsyncTimeout bounds the wait for an asynchronous publish's
// acknowledgement (the log store's batches).
const publishAsyncTimeout = 15 * time.Second

// ErrNotEmbedded is returned for a store on an external NATS server.
var ErrNotEmbedded = errors.New("store: not the embedded server")

// Stalled reports what stops the embedded JetStream from writing: "" when
// nothing does (or the store is external).
func (s *Store) Stalled() string {
	if s.srv == nil {
		return ""
	}
	if !s.srv.JetStreamEnabled() {
		return "JetStream is disabled"
	}
	h := s.srv.Healthz(&server.HealthzOptions{Details: true})
	var out []string
	for _, e := range h.Errors {
		if strings.Contains(e.Error, "write error") {
			out = append(out, e.Error)
		}
	}
	return strings.Join(out, "; ")
}

// RestartJetStream shuts the embedded JetStream down and enables it again
// with the same configuration, loading every stream from disk afresh.
func (s *Store) RestartJetStream() error {
	if s.srv == nil {
		return ErrNotEmbedded
	}
	if s.jsCfg == nil {
		return errors.New("store: JetStream was not enabled at start")
	}
	cfg := *s.jsCfg
	cfg.StoreDir = filepath.Dir(cfg.StoreDir) // EnableJetStream appends "jetstream" again
	if s.srv.JetStreamEnabled() {
		if err := s.srv.ShutdownJetStream(); err != nil {
			return fmt.Errorf("store: shut JetStream down: %w", err)
		}
	}
	if err := s.srv.EnableJetStream(&cfg); err != nil {
		return fmt.Errorf("store: enable JetStream: %w", err)
	}
	return nil
}
