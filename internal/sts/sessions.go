package sts

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	sessionsBucket = "sts_sessions"
	// sessionsMaxAge is how long a session record is kept: longer than
	// the longest session (GetSessionToken, 36 hours).
	sessionsMaxAge = 37 * time.Hour
	// maxCached bounds the in-memory session cache.
	maxCached = 50000
)

// Error is an STS error: Code is STS's ("AccessDenied",
// "ValidationError", "MalformedPolicyDocument", ...), Status its HTTP
// status, Msg what the caller is told.
type Error struct {
	Code   string
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func validation(format string, a ...any) error {
	return &Error{Code: "ValidationError", Status: 400, Msg: fmt.Sprintf(format, a...)}
}

// Service issues and resolves temporary credentials.
type Service struct {
	kv    jetstream.KeyValue
	roles *iam.Roles
	users *iam.Users
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]*auth.Session
}

// Open opens (creating if needed) the sessions bucket.
func Open(ctx context.Context, st *store.Store, roles *iam.Roles, users *iam.Users) (*Service, error) {
	kv, err := st.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   sessionsBucket,
		History:  1,
		Storage:  jetstream.FileStorage,
		TTL:      sessionsMaxAge,
		Replicas: st.Replicas(),
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", sessionsBucket, err)
	}
	return &Service{kv: kv, roles: roles, users: users, now: time.Now, cache: map[string]*auth.Session{}}, nil
}

// LookupSession returns the session of temporary access key keyID, or nil
// when there is none (auth.SessionLookup). Expired sessions are returned:
// the verifier refuses them with ExpiredToken.
func (s *Service) LookupSession(ctx context.Context, keyID string) (*auth.Session, error) {
	s.mu.Lock()
	sess := s.cache[keyID]
	s.mu.Unlock()
	if sess != nil {
		return sess, nil
	}
	e, err := s.kv.Get(ctx, keyID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sess = new(auth.Session)
	if err := json.Unmarshal(e.Value(), sess); err != nil {
		return nil, fmt.Errorf("session record %s: %w", keyID, err)
	}
	s.remember(sess)
	return sess, nil
}

// remember caches sess, dropping expired entries when the cache is full.
func (s *Service) remember(sess *auth.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= maxCached {
		now := s.now()
		for k, v := range s.cache {
			if now.After(v.Expiration) {
				delete(s.cache, k)
			}
		}
		for k := range s.cache {
			if len(s.cache) < maxCached*3/4 {
				break
			}
			delete(s.cache, k) // refetched from the store when used again
		}
	}
	s.cache[sess.AccessKeyID] = sess
}

// issue fills in sess's credentials, stores it (durably, before it is
// handed out) and returns it.
func (s *Service) issue(ctx context.Context, sess *auth.Session, d time.Duration) (*auth.Session, error) {
	now := s.now().UTC()
	sess.Created = now.Truncate(time.Millisecond)
	sess.Expiration = now.Add(d).Truncate(time.Second)
	for attempt := 0; ; attempt++ {
		var idb [10]byte
		var secret [30]byte
		var token [96]byte
		for _, b := range [][]byte{idb[:], secret[:], token[:]} {
			if _, err := rand.Read(b); err != nil {
				return nil, err
			}
		}
		sess.AccessKeyID = "ASIA" + base32.StdEncoding.EncodeToString(idb[:])
		sess.Secret = base64.StdEncoding.EncodeToString(secret[:])
		sess.Token = "IQoJb3JpZ2luX2VjE" + base64.StdEncoding.EncodeToString(token[:])
		b, err := json.Marshal(sess)
		if err != nil {
			return nil, err
		}
		if _, err := s.kv.Create(ctx, sess.AccessKeyID, b); errors.Is(err, jetstream.ErrKeyExists) && attempt < 5 {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("store temporary credentials: %w", err)
		}
		s.remember(sess)
		return sess, nil
	}
}
