package runtimeapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

const (
	pathPrefix       = "/2018-06-01/runtime/"
	invocationPrefix = "invocation/"

	hdrRequestID       = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadlineMs      = "Lambda-Runtime-Deadline-Ms"
	hdrFunctionARN     = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTraceID         = "Lambda-Runtime-Trace-Id"
	hdrClientContext   = "Lambda-Runtime-Client-Context"
	hdrCognitoIdentity = "Lambda-Runtime-Cognito-Identity"
	hdrErrorType       = "Lambda-Runtime-Function-Error-Type"
	// Trailers aws-lambda-go sets when reading a streamed response fails.
	trailerErrorType = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody = "Lambda-Runtime-Function-Error-Body"
)

var (
	bodyAccepted         = []byte(`{"status":"OK"}` + "\n")
	bodyInvalidRequestID = []byte(`{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}` + "\n")
	bodyInvalidState     = []byte(`{"errorMessage":"State transition to Ready is not allowed: the runtime must post a response or an error for the current invocation before asking for the next one","errorType":"InvalidStateTransition"}` + "\n")
	bodyNotFound         = []byte(`{"errorMessage":"Unknown Runtime API path","errorType":"NotFound"}` + "\n")
	bodyNotAllowed       = []byte(`{"errorMessage":"Method not allowed","errorType":"MethodNotAllowed"}` + "\n")

	jsonContentType = []string{"application/json"}
)

// ServeHTTP routes the Runtime API. It is exported only so that Server
// satisfies http.Handler; use Serve.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, pathPrefix)
	if !ok {
		writeJSON(w, http.StatusNotFound, bodyNotFound)
		return
	}
	switch {
	case rest == "invocation/next":
		if r.Method != http.MethodGet {
			notAllowed(w, http.MethodGet)
			return
		}
		s.handleNext(w, r)
	case rest == "init/error":
		if r.Method != http.MethodPost {
			notAllowed(w, http.MethodPost)
			return
		}
		s.handleInitError(w, r)
	case strings.HasPrefix(rest, invocationPrefix):
		id, action, ok := strings.Cut(rest[len(invocationPrefix):], "/")
		if !ok || id == "" || (action != "response" && action != "error") {
			writeJSON(w, http.StatusNotFound, bodyNotFound)
			return
		}
		if r.Method != http.MethodPost {
			notAllowed(w, http.MethodPost)
			return
		}
		s.handleAnswer(w, r, id, action == "error")
	default:
		writeJSON(w, http.StatusNotFound, bodyNotFound)
	}
}

func notAllowed(w http.ResponseWriter, allow string) {
	w.Header()["Allow"] = []string{allow}
	writeJSON(w, http.StatusMethodNotAllowed, bodyNotAllowed)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Date"] = nil // not needed by runtimes; saves formatting it per request
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// handleNext long-polls until an invocation is queued, then returns it.
func (s *Server) handleNext(w http.ResponseWriter, r *http.Request) {
	s.readyOnce.Do(func() { close(s.ready) })
	for {
		s.mu.Lock()
		p := s.cur
		if p != nil {
			if p.state != stateQueued {
				s.mu.Unlock()
				s.log.Warn("runtime asked for the next invocation without answering the current one",
					"request_id", p.inv.RequestID)
				writeJSON(w, http.StatusForbidden, bodyInvalidState)
				return
			}
			p.state = stateDelivered
			s.mu.Unlock()
			writeEvent(w, p)
			return
		}
		wake := s.wake
		s.mu.Unlock()

		select {
		case <-wake:
		case <-r.Context().Done():
			return // the runtime hung up
		case <-s.closed:
			// Drop the connection without a response: an empty 200 would
			// look like an event to the runtime.
			panic(http.ErrAbortHandler)
		}
	}
}

func writeEvent(w http.ResponseWriter, p *pending) {
	inv := p.inv
	// Assign canonical keys directly: no canonicalisation, one backing array.
	vals := make([]string, 7)
	vals[0], vals[1], vals[2], vals[3] = "application/json", inv.RequestID, p.deadlineMs, inv.FunctionARN
	vals[4], vals[5] = inv.TraceID, strconv.Itoa(len(inv.Payload))
	h := w.Header()
	h["Content-Type"] = vals[0:1:1]
	h[hdrRequestID] = vals[1:2:2]
	h[hdrDeadlineMs] = vals[2:3:3]
	h[hdrFunctionARN] = vals[3:4:4]
	h[hdrTraceID] = vals[4:5:5]
	h["Content-Length"] = vals[5:6:6]
	h["Date"] = nil
	if inv.ClientContext != "" {
		h[hdrClientContext] = []string{inv.ClientContext}
	}
	if inv.CognitoIdentity != "" {
		h[hdrCognitoIdentity] = []string{inv.CognitoIdentity}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.Payload)
}

// handleAnswer serves POST .../invocation/{id}/response and .../error.
func (s *Server) handleAnswer(w http.ResponseWriter, r *http.Request, id string, isError bool) {
	s.mu.Lock()
	p := s.cur
	if p == nil || p.state != stateDelivered || p.inv.RequestID != id {
		s.mu.Unlock()
		s.log.Warn("runtime posted for an unknown or already answered request id", "request_id", id)
		writeJSON(w, http.StatusBadRequest, bodyInvalidRequestID)
		return
	}
	p.state = stateAnswering // a concurrent duplicate post now gets 400
	s.mu.Unlock()

	var body []byte
	var err error
	res := &Result{}
	// A response in the streaming mode, or chunked (aws-lambda-go posts
	// every response chunked, and a LambdaFunctionURLStreamingResponse
	// is one), goes to the caller's sink as it arrives.
	if !isError && p.inv.Stream != nil && (strings.EqualFold(r.Header.Get(hdrResponseMode), "streaming") || r.ContentLength < 0) {
		err = streamBody(r, p.inv.Stream)
		res.Streamed = true
	} else {
		body, err = readBody(r, s.maxResp)
	}
	status := http.StatusAccepted
	switch {
	case res.Streamed && errors.Is(err, errTooLarge):
		res.Err = &FunctionError{Type: "Function.ResponseSizeTooLarge", Message: "Response size exceeded the maximum of " + strconv.Itoa(MaxStreamBytes) + " bytes for a streamed response"}
		res.Err.Body = marshalErrorDoc(errorDoc{ErrorType: res.Err.Type, ErrorMessage: res.Err.Message})
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, errTooLarge):
		res.Err = responseTooLarge(s.maxResp)
		status = http.StatusRequestEntityTooLarge
	case err != nil:
		res.Err = truncatedResponse(err)
		status = http.StatusBadRequest
	case isError:
		res.Err = parseFunctionError(r.Header.Get(hdrErrorType), body)
	case r.Trailer.Get(trailerErrorType) != "":
		// aws-lambda-go streams the response and reports a failure while
		// producing it in trailers.
		res.Err = trailerError(r.Trailer)
	default:
		res.Payload = body
	}

	s.mu.Lock()
	s.finish(p, res)
	s.mu.Unlock()

	switch status {
	case http.StatusAccepted:
		writeJSON(w, status, bodyAccepted)
	case http.StatusRequestEntityTooLarge:
		s.log.Warn("runtime response too large", "request_id", id, "limit", s.maxResp)
		writeJSON(w, status, []byte(`{"errorMessage":"Exceeded maximum allowed payload size (`+
			strconv.Itoa(s.maxResp)+` bytes).","errorType":"RequestEntityTooLarge"}`+"\n"))
	default:
		s.log.Warn("runtime response truncated", "request_id", id, "err", err)
		writeJSON(w, status, res.Err.Body)
	}
}

func trailerError(t http.Header) *FunctionError {
	body, err := base64.StdEncoding.DecodeString(t.Get(trailerErrorBody))
	if err != nil || !json.Valid(body) {
		body = nil
	}
	return parseFunctionError(t.Get(trailerErrorType), body)
}

// handleInitError serves POST /runtime/init/error: the runtime could not
// initialise (or hit a fatal error) and the environment must be discarded.
func (s *Server) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, s.maxResp)
	if err != nil && !errors.Is(err, errTooLarge) {
		s.log.Warn("reading init error body", "err", err)
	}
	fe := parseFunctionError(r.Header.Get(hdrErrorType), body)
	s.log.Warn("runtime init error", "type", fe.Type, "message", fe.Message)

	select {
	case s.initErr <- fe:
	default: // only the first one is kept
	}
	// An invocation waiting for this runtime will never be served: fail it
	// now with the init error, as AWS does for the first invoke; one that
	// arrives later fails at once (Invoke checks initFail).
	s.mu.Lock()
	if s.initFail == nil {
		s.initFail = fe
	}
	if p := s.cur; p != nil && p.state != stateAnswering {
		s.finish(p, &Result{Err: fe})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, bodyAccepted)
}

var errTooLarge = errors.New("body too large")

// hdrResponseMode marks a streamed response (aws-lambda-go, the managed
// runtimes' streamifyResponse).
const hdrResponseMode = "Lambda-Runtime-Function-Response-Mode"

// streamBody copies a streamed (chunked) response to sink as it arrives,
// at most MaxStreamBytes.
func streamBody(r *http.Request, sink StreamSink) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	sink.Begin(ct)
	buf := make([]byte, 32<<10)
	total := 0
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			total += n
			if total > MaxStreamBytes {
				return errTooLarge
			}
			if _, werr := sink.Write(buf[:n]); werr != nil {
				// The caller went away: drain what the runtime still sends.
				_, _ = io.Copy(io.Discard, r.Body)
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readBody reads the whole request body, or returns errTooLarge (with what
// was read so far) once it exceeds limit bytes.
func readBody(r *http.Request, limit int) ([]byte, error) {
	if r.ContentLength > int64(limit) {
		return nil, errTooLarge
	}
	if r.ContentLength >= 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(buf) > limit {
		return buf[:limit], errTooLarge
	}
	return buf, nil
}
