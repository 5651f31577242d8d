package auth

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

type staticSessions map[string]*Session

func (s staticSessions) LookupSession(_ context.Context, id string) (*Session, error) {
	return s[id], nil
}

// TestVerifySessionCredentials: a request signed with temporary
// credentials and their session token is the session's identity (a role
// session names its role); a wrong or missing token is ErrUnknownKey, an
// expired session ErrExpiredToken, and without a SessionLookup no token is
// accepted.
func TestVerifySessionCredentials(t *testing.T) {
	sess := &Session{AccessKeyID: "ASIAABCDEFGHIJKLMNOP", Secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", Token: "IQoJtoken",
		AccountID: "123456789012", Role: "app", RoleID: "AROAEXAMPLE", RolePath: "/", SessionName: "fn",
		Expiration: signTime.Add(15 * time.Minute)}
	sign := func(token string) *http.Request {
		body := []byte("{}")
		r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:9009/2015-03-31/functions/", bytes.NewReader(body))
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.Secret, SessionToken: token},
			r, hashHex(body), "lambda", "us-east-1", signTime)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	at := func(now time.Time, sessions SessionLookup, r *http.Request) (Identity, error) {
		v := NewVerifier(staticKeys{testAcct}, func() time.Time { return now })
		if sessions != nil {
			v.SetSessions(sessions)
		}
		return v.Verify(r, []byte("{}"))
	}
	lookup := staticSessions{sess.AccessKeyID: sess}
	id, err := at(signTime, lookup, sign(sess.Token))
	if err != nil {
		t.Fatalf("valid session: %v", err)
	}
	if !id.Temporary || !id.Restricted() || id.ARN() != "arn:aws:sts::123456789012:assumed-role/app/fn" || id.Service != "lambda" {
		t.Fatalf("identity = %+v (%s)", id, id.ARN())
	}
	for name, c := range map[string]struct {
		now      time.Time
		sessions SessionLookup
		token    string
		want     error
	}{
		"wrong token":   {signTime, lookup, "IQoJother", ErrUnknownKey},
		"no token":      {signTime, lookup, "", ErrUnknownKey},
		"unknown key":   {signTime, staticSessions{}, sess.Token, ErrUnknownKey},
		"no sessions":   {signTime, nil, sess.Token, ErrUnknownKey},
		"expired":       {signTime.Add(15 * time.Minute), lookup, sess.Token, ErrExpiredToken},
		"expired later": {signTime.Add(10 * time.Minute).Add(5*time.Minute + time.Second), lookup, sess.Token, ErrExpiredToken},
	} {
		if _, err := at(c.now, c.sessions, sign(c.token)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}
