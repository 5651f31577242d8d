package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/lambdaplane/lambdaplane/internal/invoke"
)

// BenchmarkWarmBreakdown splits a warm invoke's latency: the scheduler
// alone (Runtime API round trip into the sandbox), a raw SigV4-signed HTTP
// call (adds the API front), and the aws-sdk-go-v2 client (adds its
// middleware stack).
func BenchmarkWarmBreakdown(b *testing.B) {
	e := startServer(b)
	e.createProbe("parts")
	ctx := context.Background()
	payload := []byte(`{"name":"x"}`)
	if _, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("parts"), Payload: payload}); err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B, name string, ds []time.Duration, el time.Duration) {
		b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
		b.ReportMetric(float64(len(ds))/el.Seconds(), "invokes/s")
		fmt.Printf("%s: p50 %.3f ms p99 %.3f ms %.0f/s over %d\n", name, ms(percentile(ds, 0.5)), ms(percentile(ds, 0.99)), float64(len(ds))/el.Seconds(), len(ds))
	}
	loop := func(b *testing.B, name string, f func() error) {
		ds := make([]time.Duration, 0, b.N)
		start := time.Now()
		for i := 0; i < b.N; i++ {
			t := time.Now()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(t))
		}
		report(b, name, ds, time.Since(start))
	}
	b.Run("scheduler", func(b *testing.B) {
		acct := e.srv.Account.ID
		loop(b, "scheduler", func() error {
			_, err := e.srv.Scheduler().Invoke(ctx, &invoke.Request{AccountID: acct, Region: "us-east-1", Function: "parts", Payload: payload})
			return err
		})
	})
	b.Run("raw-http", func(b *testing.B) {
		key := e.srv.Account.Keys[0]
		creds := aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}
		signer := v4.NewSigner()
		sum := sha256.Sum256(payload)
		hash := hex.EncodeToString(sum[:])
		url := e.srv.Endpoint + "/2015-03-31/functions/parts/invocations"
		hc := &http.Client{}
		loop(b, "raw-http", func() error {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
			req.Header.Set("X-Amz-Content-Sha256", hash)
			if err := signer.SignHTTP(ctx, creds, req, hash, "lambda", "us-east-1", time.Now()); err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
	})
	b.Run("sdk", func(b *testing.B) {
		in := &lambda.InvokeInput{FunctionName: aws.String("parts"), Payload: payload}
		loop(b, "sdk", func() error { _, err := e.lambda.Invoke(ctx, in); return err })
	})
}
