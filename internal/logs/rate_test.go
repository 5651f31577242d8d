package logs

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBucketDropsOverRateWithOneMarkerPerStretch(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	l := RateLimit{Rate: 1000, Burst: 4096}
	b := newBucket(l, t0)
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')

	var sink []byte
	for range 6 { // 6 KB at once: the burst's 4 KB pass
		sink = b.write(sink, line, t0)
	}
	if len(sink) != 4096 || b.dropped != 2048 {
		t.Fatalf("passed %d, dropped %d; want 4096 and 2048", len(sink), b.dropped)
	}
	sink = b.write(sink, line, t0.Add(500*time.Millisecond)) // 500 tokens: a partial line passes
	want := DroppedLine(2048, l)
	if !bytes.HasSuffix(sink, append([]byte(want), line[:500]...)) {
		t.Fatalf("marker missing before the resumed output: %q", sink[4096:])
	}
	if b.dropped != 524 {
		t.Fatalf("dropped in the new stretch %d, want 524", b.dropped)
	}
	// The stretch still open is closed when the output is taken, on a line
	// of its own.
	sink = b.flush(sink)
	if !bytes.HasSuffix(sink, []byte("x\n"+DroppedLine(524, l))) {
		t.Fatalf("flush: %q", sink[len(sink)-120:])
	}
	if n := bytes.Count(sink, []byte("[lambdaplane]")); n != 2 {
		t.Fatalf("%d markers, want one per stretch (2)", n)
	}
	if got := b.flush(nil); got != nil {
		t.Fatalf("flush without drops: %q", got)
	}
	// Ten idle seconds refill the bucket to its burst, no more.
	sink = b.write(nil, bytes.Repeat([]byte("y"), 5000), t0.Add(11*time.Second))
	if len(sink) != 4096 {
		t.Fatalf("after idling %d bytes passed, want the burst (4096)", len(sink))
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
