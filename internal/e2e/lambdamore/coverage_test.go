package lambdamore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/lambdaops"
)

// coverageFloor is how many operations of the SDK's Lambda model
// lambdaplane served when this test last changed; the test fails if fewer
// are served (raise it as operations are added).
const coverageFloor = 71

// TestOperationCoverage sends every operation of the current Lambda model
// (lambdaops.Model, generated from aws-sdk-go-v2's) to a server, signed
// with the account's root keys, with made-up path labels and an empty
// JSON body: an operation is served when its answer is neither the
// "lambdaplane does not serve" refusal nor a server error (a result, or
// the operation's own validation or not-found error). It prints the
// unserved ones.
func TestOperationCoverage(t *testing.T) {
	e := harness.Start(t)
	k := e.Srv.Account.Keys[0]
	creds := aws.Credentials{AccessKeyID: k.ID, SecretAccessKey: k.Secret}
	signer := v4.NewSigner()
	client := &http.Client{Timeout: 30 * time.Second}
	label := map[string]string{
		"FunctionName": "coverage-fn", "Name": "live", "LayerName": "coverage-layer", "VersionNumber": "1",
		"UUID": "00000000-0000-0000-0000-000000000000", "ResourceArn": "arn:aws:lambda:us-east-1:" + e.Srv.Account.ID + ":function:coverage-fn",
		"CodeSigningConfigArn": "arn:aws:lambda:us-east-1:" + e.Srv.Account.ID + ":code-signing-config:csc-00000000000000000",
		"StatementId":          "s1", "Arn": "arn:aws:lambda:us-east-1:" + e.Srv.Account.ID + ":function:coverage-fn",
	}
	model := lambdaops.Model()
	var served, unserved []string
	for _, rt := range model {
		path, query, _ := strings.Cut(rt.URI, "?")
		segs := strings.Split(path, "/")
		for i, s := range segs {
			if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
				name := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
				name = strings.TrimSuffix(name, "+")
				v, ok := label[name]
				if !ok {
					v = "coverage-" + strings.ToLower(name)
				}
				segs[i] = strings.ReplaceAll(v, ":", "%3A")
			}
		}
		url := e.Srv.Endpoint + strings.Join(segs, "/")
		if query != "" {
			url += "?" + query
		}
		var body []byte
		if rt.Method == http.MethodPost || rt.Method == http.MethodPut || rt.Method == http.MethodPatch {
			body = []byte("{}")
		}
		req, err := http.NewRequest(rt.Method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", rt.Name, err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		sum := sha256.Sum256(body)
		if err := signer.SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", rt.Name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Amzn-ErrorType") == "UnknownOperationException" || strings.Contains(string(b), "does not serve") {
			unserved = append(unserved, rt.Name)
			continue
		}
		if resp.StatusCode >= 500 {
			t.Errorf("%s %s: %d %s (a server error is no answer)", rt.Method, url, resp.StatusCode, b)
			unserved = append(unserved, rt.Name)
			continue
		}
		served = append(served, rt.Name)
	}
	slices.Sort(unserved)
	t.Logf("served %d of %d Lambda operations; not served (%d): %s", len(served), len(model), len(unserved), strings.Join(unserved, ", "))
	if len(served) < coverageFloor {
		t.Fatalf("only %d of %d operations served, fewer than the %d served before", len(served), len(model), coverageFloor)
	}
}
