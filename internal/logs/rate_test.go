package logs

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBucketDropsOverRateWithOneMarkerPerStretch(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	l := RateLimit{Rate: 1000, Burst: 8192}
	b := newBucket(l, t0)
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')

	var sink []byte
	for range 10 { // 10 KB at once: the burst's 8 KB pass
		sink = b.write(sink, line, t0)
	}
	if len(sink) != 8192 || b.dropped != 2048 {
		t.Fatalf("passed %d, dropped %d; want 8192 and 2048", len(sink), b.dropped)
	}
	// A second later 1000 bytes are refilled, too few to resume: the
	// stretch goes on, without a marker.
	sink = b.write(sink, line, t0.Add(time.Second))
	if len(sink) != 8192 || b.dropped != 3072 {
		t.Fatalf("passed %d, dropped %d; want 8192 and 3072", len(sink), b.dropped)
	}
	// At 5 s (5000 bytes refilled) output resumes after the stretch's
	// marker, which is charged to the bucket.
	m1 := DroppedLine(3072, l)
	sink = b.write(sink, line, t0.Add(5*time.Second))
	if !bytes.Equal(sink[8192:], append([]byte(m1), line...)) || b.dropped != 0 {
		t.Fatalf("resumed output %q, dropped %d", sink[8192:], b.dropped)
	}
	left := 5000 - len(m1) - 1024
	for range 4 {
		sink = b.write(sink, line, t0.Add(5*time.Second))
	}
	if want := int64(4*1024 - left); b.dropped != want {
		t.Fatalf("dropped in the new stretch %d, want %d", b.dropped, want)
	}
	// The stretch still open is closed when the output is taken, on a line
	// of its own after the partial line that passed.
	sink = b.flush(sink)
	if !bytes.HasSuffix(sink, []byte("x\n"+DroppedLine(int64(4*1024-left), l))) {
		t.Fatalf("flush: %q", sink[len(sink)-120:])
	}
	if n := bytes.Count(sink, []byte("[lambdaplane]")); n != 2 {
		t.Fatalf("%d markers, want one per stretch (2)", n)
	}
	if got := b.flush(nil); got != nil {
		t.Fatalf("flush without drops: %q", got)
	}
	// Idling refills the bucket to its burst, no more.
	sink = b.write(nil, bytes.Repeat([]byte("y"), 10000), t0.Add(time.Minute))
	if len(sink) != 8192 {
		t.Fatalf("after idling %d bytes passed, want the burst (8192)", len(sink))
	}
}

func TestRateLimitDefaults(t *testing.T) {
	var r RateLimit
	if err := r.Defaults(); err != nil || r.Rate != DefaultRateBytes || r.Burst != DefaultBurstBytes {
		t.Fatalf("defaults %+v, %v", r, err)
	}
	if b := newBucket(RateLimit{Rate: -1}, time.Now()); b != nil {
		t.Fatal("a negative rate must mean no bound")
	}
	bad := RateLimit{Rate: 100, Burst: 10}
	if err := bad.Defaults(); err == nil || !strings.Contains(err.Error(), "--log-rate-burst-bytes") {
		t.Fatalf("tiny burst: %v", err)
	}
	if !strings.HasPrefix(DroppedLine(7, RateLimit{Rate: 1, Burst: 2}), "[lambdaplane] 7 bytes of function output dropped: over the log rate limit") {
		t.Fatal("marker text changed")
	}
}
