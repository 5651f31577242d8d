package control

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/codepkg"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// BenchmarkControlWrites measures CreateFunction and
// UpdateFunctionConfiguration with every store write synced to disk before
// it is acknowledged (the default) and with the embedded server's former
// background sync every 2 s, side by side. Besides ns/op it reports the
// median and 99th percentile of one call.
//
//	go test ./internal/control -run '^$' -bench ControlWrites -benchtime 300x -count 3
func BenchmarkControlWrites(b *testing.B) {
	for _, mode := range []struct {
		name  string
		every time.Duration
	}{{"sync=always", 0}, {"sync=2s", 2 * time.Second}} {
		b.Run("CreateFunction/"+mode.name, func(b *testing.B) {
			s := benchService(b, mode.every)
			zip := testZip(b, map[string]string{"bootstrap": "#!/bin/sh\n"})
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := s.CreateFunction(context.Background(), testAcct, testRegion, &CreateInput{FunctionName: fmt.Sprintf("f%d", i),
					Runtime: "provided.al2023", Role: "arn:aws:iam::" + testAcct + ":role/r", Handler: "bootstrap", Code: &CodeInput{ZipFile: zip}}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			reportLatency(b, lat)
		})
		b.Run("UpdateFunctionConfiguration/"+mode.name, func(b *testing.B) {
			s := benchService(b, mode.every)
			zip := testZip(b, map[string]string{"bootstrap": "#!/bin/sh\n"})
			if _, err := s.CreateFunction(context.Background(), testAcct, testRegion, &CreateInput{FunctionName: "f",
				Runtime: "provided.al2023", Role: "arn:aws:iam::" + testAcct + ":role/r", Handler: "bootstrap", Code: &CodeInput{ZipFile: zip}}); err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				desc := fmt.Sprintf("d%d", i)
				t0 := time.Now()
				if _, err := s.UpdateConfig(context.Background(), testAcct, testRegion, "f", &UpdateConfigInput{Description: &desc}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			reportLatency(b, lat)
		})
	}
}

func benchService(b *testing.B, syncEvery time.Duration) *Service {
	b.Helper()
	dir := b.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir, SyncInterval: syncEvery})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	s, err := New(ctx, Options{Store: st, DataDir: dir, CodeLimits: codepkg.DefaultLimits(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
