package lambdaapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"sync"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
)

// InvokeWithResponseStream answers with an application/vnd.amazon.eventstream
// body: PayloadChunk events carrying the function's response as it streams
// it (one chunk for a function that does not stream), then one
// InvokeComplete event (ErrorCode, ErrorDetails, LogResult).

// EventMessage encodes one event-stream message (the binary framing the
// AWS SDKs decode): prelude (total length, headers length, CRC), string
// headers, payload, message CRC.
func EventMessage(headers [][2]string, payload []byte) []byte {
	var hb bytes.Buffer
	for _, h := range headers {
		hb.WriteByte(byte(len(h[0])))
		hb.WriteString(h[0])
		hb.WriteByte(7) // string
		_ = binary.Write(&hb, binary.BigEndian, uint16(len(h[1])))
		hb.WriteString(h[1])
	}
	total := 12 + hb.Len() + len(payload) + 4
	msg := make([]byte, 0, total)
	msg = binary.BigEndian.AppendUint32(msg, uint32(total))
	msg = binary.BigEndian.AppendUint32(msg, uint32(hb.Len()))
	msg = binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg[:8]))
	msg = append(msg, hb.Bytes()...)
	msg = append(msg, payload...)
	return binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
}

func payloadChunk(p []byte) []byte {
	return EventMessage([][2]string{{":event-type", "PayloadChunk"}, {":content-type", "application/octet-stream"}, {":message-type", "event"}}, p)
}

func invokeComplete(code, details, logResult string) []byte {
	body := map[string]string{}
	if code != "" {
		body["ErrorCode"] = code
	}
	if details != "" {
		body["ErrorDetails"] = details
	}
	if logResult != "" {
		body["LogResult"] = logResult
	}
	b, _ := json.Marshal(body)
	return EventMessage([][2]string{{":event-type", "InvokeComplete"}, {":content-type", "application/json"}, {":message-type", "event"}}, b)
}

// eventStreamSink writes a streamed response as PayloadChunk events. The
// runtime's request goroutine writes to it; close stops it for good once
// the API handler is done with its ResponseWriter.
type eventStreamSink struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	started bool
	closed  bool
	version string
}

func (s *eventStreamSink) startLocked() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "application/vnd.amazon.eventstream")
	if s.version != "" {
		h.Set("X-Amz-Executed-Version", s.version)
	}
	s.w.WriteHeader(http.StatusOK)
}

func (s *eventStreamSink) Begin(string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.startLocked()
		http.NewResponseController(s.w).Flush()
	}
}

func (s *eventStreamSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, http.ErrHandlerTimeout
	}
	s.startLocked()
	if _, err := s.w.Write(payloadChunk(p)); err != nil {
		s.closed = true
		return 0, err
	}
	_ = http.NewResponseController(s.w).Flush()
	return len(p), nil
}

func (s *eventStreamSink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// invokeStream serves InvokeWithResponseStream.
func (h *Handler) invokeStream(c *call) {
	name := c.param("FunctionName")
	hd := c.r.Header
	payload := c.body
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("{}")
	} else if !json.Valid(payload) {
		c.fail(control.InvalidContent("Could not parse request body into json: Could not parse payload into json: Unexpected character: was expecting a JSON value"))
		return
	}
	typ := hd.Get("X-Amz-Invocation-Type")
	switch typ {
	case "", invoke.RequestResponse, invoke.DryRun:
	default:
		c.fail(&control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: Value '" + typ + "' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]"})
		return
	}
	logType := hd.Get("X-Amz-Log-Type")
	if logType != "" && logType != "None" && logType != "Tail" {
		c.fail(control.InvalidParam("Invalid LogType %q: use None or Tail", logType))
		return
	}
	q := c.r.URL.Query().Get("Qualifier")
	cfg, err := h.ctl.Resolve(c.id.AccountID, c.region(), name, q)
	if err != nil {
		c.fail(err)
		return
	}
	sink := &eventStreamSink{w: c.w, version: cfg.Version}
	c.w.Header().Set("X-Amzn-RequestId", c.reqID)
	req := &invoke.Request{
		AccountID: c.id.AccountID, Region: c.region(), Function: name, Qualifier: q,
		InvocationType: typ, Payload: payload, LogTail: logType == "Tail",
		ClientContext: hd.Get("X-Amz-Client-Context"), RequestID: c.reqID,
		TraceID: traceID(hd.Get("X-Amzn-Trace-Id")), Stream: sink,
	}
	resp, err := h.sched.Invoke(c.ctx, req)
	sink.close()
	if err != nil {
		if !sink.started {
			c.fail(err)
			return
		}
		code, details := "ServiceException", err.Error()
		if ce, ok := err.(*control.Error); ok {
			code, details = ce.Code, ce.Message
		}
		_, _ = c.w.Write(invokeComplete(code, details, ""))
		return
	}
	if resp.Status == http.StatusNoContent { // DryRun
		c.w.WriteHeader(http.StatusNoContent)
		return
	}
	if !sink.started {
		sink.startLocked()
	}
	if !resp.Streamed && resp.FunctionError == "" && len(resp.Payload) > 0 {
		_, _ = c.w.Write(payloadChunk(resp.Payload))
	}
	code, details := "", ""
	if resp.FunctionError != "" {
		code, details = resp.FunctionError, string(resp.Payload)
	}
	_, _ = c.w.Write(invokeComplete(code, details, resp.LogResult))
}
