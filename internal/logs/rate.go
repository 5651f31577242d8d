package logs

import (
	"fmt"
	"time"
)

// Output rate defaults: what one execution environment may write.
const (
	DefaultRateBytes  = 256 << 10 // bytes per second, sustained
	DefaultBurstBytes = 1 << 20   // bytes at once
)

// RateLimit bounds one environment's output (stdout and stderr together)
// with a token bucket: Burst bytes at once, Rate bytes per second
// sustained. Output beyond it is dropped, and a marker line (DroppedLine)
// says how much. Rate < 0 means no bound; zero fields take the defaults.
type RateLimit struct {
	Rate  int64
	Burst int64
}

// Defaults fills unset fields and checks the burst.
func (r *RateLimit) Defaults() error {
	r.fill()
	if r.Rate > 0 && r.Burst < 4096 {
		return fmt.Errorf("log output burst %d bytes is too small: at least 4096 (--log-rate-burst-bytes)", r.Burst)
	}
	return nil
}

func (r *RateLimit) fill() {
	if r.Rate == 0 {
		r.Rate = DefaultRateBytes
	}
	if r.Burst == 0 {
		r.Burst = DefaultBurstBytes
	}
}

// DroppedLine is the marker that stands in for a stretch of dropped
// output, the counterpart of Lambda's platform.logsDropped event.
func DroppedLine(n int64, l RateLimit) string {
	return fmt.Sprintf("[lambdaplane] %d bytes of function output dropped: over the log rate limit (%d bytes/s, burst %d bytes)\n", n, l.Rate, l.Burst)
}

// resumeBytes is how far the bucket must refill before output passes again
// after a drop: without it, every read during a flood would pass the few
// bytes refilled since the last one, each after a marker of its own.
const resumeBytes = 4096

// bucket is the token bucket of one environment's output. Not safe for
// concurrent use (the Capture's mutex guards it). Markers are charged to
// it like output, so a flood's markers stay within the rate too.
type bucket struct {
	l       RateLimit
	tokens  float64
	last    time.Time
	dropped int64 // bytes dropped in the current stretch
}

// newBucket returns nil when l sets no bound.
func newBucket(l RateLimit, now time.Time) *bucket {
	l.fill()
	if l.Rate < 0 {
		return nil
	}
	return &bucket{l: l, tokens: float64(l.Burst), last: now}
}

// write appends to sink the part of p (written at now) that passes: the
// start of p, as far as the bucket's tokens reach. Once output was
// dropped, nothing passes until the bucket has refilled resumeBytes (or its
// burst, if smaller); then the dropped stretch's marker comes first. What
// does not pass is counted into the current stretch.
func (b *bucket) write(sink, p []byte, now time.Time) []byte {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.tokens+d.Seconds()*float64(b.l.Rate), float64(b.l.Burst))
		b.last = now
	}
	if b.dropped > 0 && b.tokens < float64(min(resumeBytes, b.l.Burst)) {
		b.dropped += int64(len(p))
		return sink
	}
	sink = b.flush(sink)
	k := max(0, min(len(p), int(b.tokens)))
	if k > 0 {
		b.tokens -= float64(k)
		sink = append(sink, p[:k]...)
	}
	b.dropped += int64(len(p) - k)
	return sink
}

// flush ends the current dropped stretch, if any: it appends the
// stretch's marker to sink, on a line of its own.
func (b *bucket) flush(sink []byte) []byte {
	if b.dropped == 0 {
		return sink
	}
	n := len(sink)
	if n > 0 && sink[n-1] != '\n' {
		sink = append(sink, '\n')
	}
	sink = append(sink, DroppedLine(b.dropped, b.l)...)
	b.tokens -= float64(len(sink) - n)
	b.dropped = 0
	return sink
}
