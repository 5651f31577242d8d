package esm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// A queue and a function have at most one mapping. Its claim, a key in
// the mappings' bucket holding the mapping's UUID, is created before the
// mapping: of two concurrent creates (on any servers) exactly one
// creates the key, whatever the listings they saw.

// claimStale is how long a claim whose mapping cannot be read is taken
// for a create in progress (between its claim and its record) rather
// than left behind by a server that died there.
const claimStale = 30 * time.Second

// claimKey is "c.<account>.<sha256 of the queue ARN and the function ARN>".
func claimKey(m *Mapping) string {
	sum := sha256.Sum256([]byte(m.EventSourceArn + "\n" + m.FunctionArn()))
	return "c." + m.AccountID + "." + hex.EncodeToString(sum[:16])
}

func errDuplicate(m *Mapping, uuid string) error {
	return &control.Error{Code: "ResourceConflictException", Status: 409, Message: fmt.Sprintf(
		"An event source mapping with SQS arn (\" %s \") and function (\" %s \") already exists. Please update or delete the existing mapping with UUID %s", m.EventSourceArn, m.FunctionArn(), uuid)}
}

// claim takes the claim of m's queue and function for m.UUID and returns
// its revision; ResourceConflictException when a mapping that is not
// being deleted (or a create in progress) holds it.
func (s *Service) claim(ctx context.Context, m *Mapping) (uint64, error) {
	kv := s.table.KV()
	k := claimKey(m)
	for range 5 {
		rev, err := kv.Create(ctx, k, []byte(m.UUID))
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, err
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return 0, err
		}
		holder := string(e.Value())
		if holder == m.UUID {
			return e.Revision(), nil
		}
		o, _, err := s.table.Get(ctx, key(m.AccountID, holder))
		switch {
		case err == nil && o.State != StateDeleting && o.EventSourceArn == m.EventSourceArn && o.FunctionArn() == m.FunctionArn():
			return 0, errDuplicate(m, holder)
		case err == nil:
			// Being deleted, or moved to another function: free.
		case errors.Is(err, store.ErrNotFound):
			if time.Since(e.Created()) < claimStale {
				return 0, errDuplicate(m, holder)
			}
		default:
			return 0, err
		}
		rev, err = kv.Update(ctx, k, []byte(m.UUID), e.Revision())
		if err == nil {
			return rev, nil
		}
		if !conflict(err) {
			return 0, err
		}
		// Another create took it over first: look again.
	}
	return 0, errDuplicate(m, "")
}

// unclaim gives back a claim taken at rev (the create failed).
func (s *Service) unclaim(ctx context.Context, m *Mapping, rev uint64) {
	_ = s.table.KV().Delete(context.WithoutCancel(ctx), claimKey(m), jetstream.LastRevision(rev))
}

// releaseClaim gives back m's claim if m holds it (m deleted, or moved to
// another function).
func (s *Service) releaseClaim(ctx context.Context, m *Mapping) {
	kv := s.table.KV()
	k := claimKey(m)
	e, err := kv.Get(ctx, k)
	if err != nil || string(e.Value()) != m.UUID {
		return
	}
	_ = kv.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
}
