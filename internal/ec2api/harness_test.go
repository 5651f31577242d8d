package ec2api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

const (
	acctA        = "111111111111"
	acctB        = "222222222222"
	keyA         = "AKIAAAAAAAAAAAAAAAAA"
	keyB         = "AKIABBBBBBBBBBBBBBBB"
	badSecretKey = "AKIACCCCCCCCCCCCCCCC"
)

var credRE = regexp.MustCompile(`Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/([a-z0-9]+)/aws4_request`)

// fakeFront stands in for the SigV4 front: it trusts the access key in the
// Authorization header (mapping it to an account) without checking the
// signature, except for badSecretKey whose signature "never matches".
type fakeFront struct {
	svc  *Service
	keys map[string]string
}

func (f *fakeFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := credRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		f.svc.WriteError(w, r, auth.ErrMissingAuth)
		return
	}
	if m[1] == badSecretKey {
		f.svc.WriteError(w, r, auth.ErrBadSignature)
		return
	}
	acct, ok := f.keys[m[1]]
	if !ok {
		f.svc.WriteError(w, r, auth.ErrUnknownKey)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.svc.WriteError(w, r, err)
		return
	}
	f.svc.ServeAWS(w, r, auth.Identity{AccountID: acct, AccessKeyID: m[1], Service: m[3], Region: m[2]}, body)
}

type env struct {
	url   string
	model *vpc.Model
}

func newEnv(t *testing.T) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	m, err := vpc.Open(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&fakeFront{svc: New(m, log), keys: map[string]string{keyA: acctA, keyB: acctB, badSecretKey: acctA}})
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, model: m}
}
