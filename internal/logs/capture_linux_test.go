package logs

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

func TestCaptureRateLimit(t *testing.T) {
	l := RateLimit{Rate: 1, Burst: 4096}
	c, err := NewCapture(1<<20, l)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var written []byte
	for i := range 200 {
		written = fmt.Appendf(written, "line %04d %s\n", i, bytes.Repeat([]byte("z"), 40))
	}
	if _, err := c.Writer().Write(written); err != nil {
		t.Fatal(err)
	}
	out := c.Take()
	m := regexp.MustCompile(`\[lambdaplane\] (\d+) bytes of function output dropped: over the log rate limit \(1 bytes/s, burst 4096 bytes\)\n`).FindAllSubmatchIndex(out, -1)
	if len(m) != 1 || m[0][1] != len(out) {
		t.Fatalf("want one marker closing the output, got %d in %q", len(m), out)
	}
	passed := out[:m[0][0]]
	if len(passed) > 0 && passed[len(passed)-1] == '\n' && !bytes.HasPrefix(written, passed) {
		passed = passed[:len(passed)-1] // the newline that puts the marker on its own line
	}
	if !bytes.HasPrefix(written, passed) || len(passed) < 4096 {
		t.Fatalf("passed %d bytes that are not the start of the output", len(passed))
	}
	dropped, _ := strconv.Atoi(string(out[m[0][2]:m[0][3]]))
	if len(passed)+dropped != len(written) {
		t.Fatalf("passed %d + dropped %d != written %d", len(passed), dropped, len(written))
	}
	// Nothing more was dropped: the next take has no marker.
	if out := c.Take(); len(out) != 0 {
		t.Fatalf("second take %q", out)
	}

	// Without a bound everything passes.
	u, err := NewCapture(1<<20, RateLimit{Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_, _ = u.Writer().Write(written)
	if out := u.Take(); !bytes.Equal(out, written) {
		t.Fatalf("unbounded capture passed %d of %d bytes", len(out), len(written))
	}
}
