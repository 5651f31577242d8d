package codeurl

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// Path is where the front serves the zips.
const Path = "/_lambdaplane/code"

// DefaultTTL is how long a URL is valid, as on Lambda.
const DefaultTTL = 10 * time.Minute

// Kinds of stored zips.
const (
	KindFunction = "function"
	KindLayer    = "layer"
)

const (
	secretBucket = "secrets"
	secretKey    = "code_url_hmac"
)

// Signer signs and checks code URLs.
type Signer struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// Open loads the signing secret from the store, creating it on first use
// (every server of a cluster ends up with the one that was stored first).
// ttl <= 0 is DefaultTTL; now nil is time.Now.
func Open(ctx context.Context, st *store.Store, ttl time.Duration, now func() time.Time) (*Signer, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	kv, err := st.Bucket(ctx, secretBucket)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		e, err := kv.Get(ctx, secretKey)
		if err == nil {
			key, err := hex.DecodeString(string(e.Value()))
			if err != nil || len(key) < 32 {
				return nil, fmt.Errorf("code URL secret in bucket %s is malformed", secretBucket)
			}
			return &Signer{key: key, ttl: ttl, now: now}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("read the code URL secret: %w", err)
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		if _, err := kv.Create(ctx, secretKey, []byte(hex.EncodeToString(b[:]))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("store the code URL secret: %w", err)
		}
	}
	return nil, errors.New("code URL secret: could not create or read it")
}

// TTL is how long the URLs the Signer makes are valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

func (s *Signer) sign(kind, key string, expires int64) string {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "lambdaplane-code-url-v1\n%s\n%s\n%d", kind, key, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// URL is the presigned URL of a stored zip on the endpoint base
// (http://host:port), valid for the Signer's TTL from now.
func (s *Signer) URL(base, kind, key string) string {
	exp := s.now().Add(s.ttl).Unix()
	q := url.Values{}
	q.Set("kind", kind)
	q.Set("key", key)
	q.Set("X-Lp-Expires", strconv.FormatInt(exp, 10))
	q.Set("X-Lp-Signature", s.sign(kind, key, exp))
	return base + Path + "?" + q.Encode()
}

// Refusal is a URL that does not grant access: S3's code and message.
type Refusal struct {
	Code, Message string
	Expires       time.Time // for an expired URL
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// Check verifies a URL's query: the kind and key it grants.
func (s *Signer) Check(q url.Values) (kind, key string, err error) {
	kind, key = q.Get("kind"), q.Get("key")
	exp, perr := strconv.ParseInt(q.Get("X-Lp-Expires"), 10, 64)
	sig := q.Get("X-Lp-Signature")
	if kind == "" || key == "" || perr != nil || sig == "" {
		return "", "", &Refusal{Code: "AccessDenied", Message: "Query-string authentication requires the kind, key, X-Lp-Expires and X-Lp-Signature parameters: use the Location GetFunction returned"}
	}
	want := s.sign(kind, key, exp)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", "", &Refusal{Code: "SignatureDoesNotMatch", Message: "The request signature we calculated does not match the signature you provided. The URL was altered: use the Location GetFunction returned, unchanged."}
	}
	if t := time.Unix(exp, 0); !s.now().Before(t) {
		return "", "", &Refusal{Code: "AccessDenied", Message: "Request has expired", Expires: t}
	}
	return kind, key, nil
}

// Opener opens a stored zip by kind and key (its size, and a reader).
type Opener func(ctx context.Context, kind, key string) (int64, io.ReadCloser, error)

// ErrNoSuchKey is what an Opener returns for a zip that is gone.
var ErrNoSuchKey = errors.New("no such code package")

// Handler serves GET/HEAD of valid URLs with the zip.
func (s *Signer) Handler(open Opener, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeXML(w, http.StatusMethodNotAllowed, &Refusal{Code: "MethodNotAllowed", Message: "The specified method is not allowed against this resource: use GET"}, s.now())
			return
		}
		kind, key, err := s.Check(r.URL.Query())
		if err != nil {
			writeXML(w, http.StatusForbidden, err.(*Refusal), s.now())
			return
		}
		size, body, err := open(r.Context(), kind, key)
		if errors.Is(err, ErrNoSuchKey) {
			writeXML(w, http.StatusNotFound, &Refusal{Code: "NoSuchKey", Message: "The specified key does not exist: the code package was deleted"}, s.now())
			return
		}
		if err != nil {
			log.Warn("serving a code package", "kind", kind, "key", key, "err", err)
			writeXML(w, http.StatusInternalServerError, &Refusal{Code: "InternalError", Message: "We encountered an internal error reading the code package. Please try again."}, s.now())
			return
		}
		defer body.Close()
		h := w.Header()
		h.Set("Content-Type", "application/zip")
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("ETag", `"`+key+`"`)
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.Copy(w, body)
		}
	})
}

func writeXML(w http.ResponseWriter, status int, r *Refusal, now time.Time) {
	type xmlError struct {
		XMLName    xml.Name `xml:"Error"`
		Code       string   `xml:"Code"`
		Message    string   `xml:"Message"`
		Expires    string   `xml:"Expires,omitempty"`
		ServerTime string   `xml:"ServerTime,omitempty"`
		RequestID  string   `xml:"RequestId"`
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	e := xmlError{Code: r.Code, Message: r.Message, RequestID: hex.EncodeToString(id[:])}
	if !r.Expires.IsZero() {
		e.Expires = r.Expires.UTC().Format(time.RFC3339)
		e.ServerTime = now.UTC().Format(time.RFC3339)
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(e)
}
