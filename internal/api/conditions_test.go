package api

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
)

func TestGlobalConditions(t *testing.T) {
	now := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.9:4242"
	got := globalConditions(r, auth.Identity{AccountID: "111122223333", User: "dev", Region: "eu-west-1"}, map[string][]string{"aws:ResourceTag/team": {"a"}, "aws:SourceIp": {"override"}}, now)
	want := map[string]string{
		"aws:CurrentTime": "2026-12-03T16:00:00Z", "aws:EpochTime": "1796313600", "aws:SourceIp": "override",
		"aws:SecureTransport": "false", "aws:RequestedRegion": "eu-west-1", "aws:PrincipalAccount": "111122223333",
		"aws:PrincipalType": "User", "aws:PrincipalArn": "arn:aws:iam::111122223333:user/dev", "aws:username": "dev",
		"aws:ResourceTag/team": "a",
	}
	if len(got) != len(want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
	r.TLS = &tls.ConnectionState{}
	got = globalConditions(r, auth.Identity{AccountID: "111122223333", Role: "app", Session: "s"}, nil, now)
	if got["aws:SecureTransport"][0] != "true" || got["aws:SourceIp"][0] != "127.0.0.9" || got["aws:PrincipalType"][0] != "AssumedRole" ||
		got["aws:PrincipalArn"][0] != "arn:aws:iam::111122223333:role/app" || got["aws:username"] != nil {
		t.Fatalf("role session over TLS: %v", got)
	}
}
