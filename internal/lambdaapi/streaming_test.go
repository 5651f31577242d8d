package lambdaapi

import (
	"bytes"
	"testing"

	"github.com/aws/smithy-go/eventstream"
)

// TestEventMessageDecodes: the SDKs' event-stream decoder reads the
// PayloadChunk and InvokeComplete messages back (CRCs, headers, payloads).
func TestEventMessageDecodes(t *testing.T) {
	var buf bytes.Buffer
	buf.Write(payloadChunk([]byte("hello")))
	buf.Write(payloadChunk([]byte{0, 1, 2}))
	buf.Write(invokeComplete("Unhandled", `{"errorMessage":"x"}`, "bG9n"))
	d := eventstream.NewDecoder()
	want := []struct{ typ, payload string }{
		{"PayloadChunk", "hello"},
		{"PayloadChunk", "\x00\x01\x02"},
		{"InvokeComplete", `{"ErrorCode":"Unhandled","ErrorDetails":"{\"errorMessage\":\"x\"}","LogResult":"bG9n"}`},
	}
	for i, w := range want {
		m, err := d.Decode(&buf, nil)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got := m.Headers.Get(":event-type"); got == nil || got.String() != w.typ {
			t.Fatalf("message %d: event type %v, want %s", i, got, w.typ)
		}
		if got := m.Headers.Get(":message-type"); got == nil || got.String() != "event" {
			t.Fatalf("message %d: message type %v", i, got)
		}
		if string(m.Payload) != w.payload {
			t.Fatalf("message %d: payload %q, want %q", i, m.Payload, w.payload)
		}
	}
	if buf.Len() != 0 {
		t.Fatalf("%d bytes left over", buf.Len())
	}
}
