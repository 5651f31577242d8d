// Package lineage tracks how many times an event has looped through a
// function, as Lambda's recursive loop detection does: the chain travels in
// the X-Ray trace header's Lineage field (Lineage=<tag>:<count>|<tag>:<count>,
// one counter per function the event reached), through invocations, the
// function's _X_AMZN_TRACE_ID (the SDKs send it back as X-Amzn-Trace-Id),
// SQS messages (the AWSTraceHeader system attribute) and invocation
// records. Pure code: the scheduler decides what to stop.
package lineage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// MaxLoops is how many invocations of one function an event chain may make
// before Lambda stops the next one (RecursiveLoop Terminate).
const MaxLoops = 16

// Tag is a function's tag in the Lineage field: 8 hex digits of a hash of
// its account and name.
func Tag(account, function string) string {
	s := sha256.Sum256([]byte(account + ":" + function))
	return hex.EncodeToString(s[:4])
}

// Count returns the counter of tag in header's Lineage field (0: none).
func Count(header, tag string) int {
	lin, ok := field(header)
	if !ok {
		return 0
	}
	for lin != "" {
		var e string
		e, lin, _ = strings.Cut(lin, "|")
		if t, n, ok := entry(e); ok && t == tag {
			return n
		}
	}
	return 0
}

// Step returns header with tag's counter one higher (added at 1 when the
// header has none) and the counter it had before. The other fields and the
// other functions' counters are kept.
func Step(header, tag string) (string, int) {
	var parts []string
	var entries []string
	prev := 0
	for header != "" {
		var p string
		p, header, _ = strings.Cut(header, ";")
		p = strings.TrimSpace(p)
		v, ok := strings.CutPrefix(p, "Lineage=")
		if !ok {
			if p != "" {
				parts = append(parts, p)
			}
			continue
		}
		for v != "" {
			var e string
			e, v, _ = strings.Cut(v, "|")
			t, n, ok := entry(e)
			if !ok {
				continue
			}
			if t == tag {
				prev = n
				continue
			}
			entries = append(entries, t+":"+strconv.Itoa(n))
		}
	}
	entries = append(entries, tag+":"+strconv.Itoa(prev+1))
	return strings.Join(append(parts, "Lineage="+strings.Join(entries, "|")), ";"), prev
}

// field returns the value of the header's Lineage field.
func field(header string) (string, bool) {
	i := strings.Index(header, "Lineage=")
	if i < 0 {
		return "", false
	}
	v := header[i+len("Lineage="):]
	if j := strings.IndexByte(v, ';'); j >= 0 {
		v = v[:j]
	}
	return v, true
}

// entry parses "<tag>:<count>" (or the versioned "<version>:<tag>:<count>").
func entry(e string) (string, int, bool) {
	e = strings.TrimSpace(e)
	i := strings.LastIndexByte(e, ':')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(e[i+1:])
	if err != nil || n < 0 {
		return "", 0, false
	}
	t := e[:i]
	if j := strings.IndexByte(t, ':'); j >= 0 {
		t = t[j+1:]
	}
	if t == "" {
		return "", 0, false
	}
	return t, n, true
}

type ctxKey struct{}

// WithHeader returns ctx carrying an event's trace header to the service
// that passes the event on (an event source mapping's invoke, a
// destination's send).
func WithHeader(ctx context.Context, header string) context.Context {
	if header == "" {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, header)
}

// Header is the trace header ctx carries ("" none).
func Header(ctx context.Context) string {
	h, _ := ctx.Value(ctxKey{}).(string)
	return h
}
