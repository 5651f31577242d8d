package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// OpUnserved labels requests for a service lambdaplane does not serve in
// the request metric (whose service label is then "unserved": the name
// is the client's).
const OpUnserved = "unserved"

// UnservedCode is the error code of a request for a service lambdaplane
// does not serve.
const UnservedCode = "UnsupportedService"

// unserved answers every request signed for a service lambdaplane does not
// serve (sts before it exists, s3, sns, dynamodb, …) with an error in the
// request's own protocol that names the service: Query XML for Action=
// requests, JSON for X-Amz-Target requests, S3's REST-XML for s3, REST-JSON
// otherwise. Nothing is authenticated or read first: there is nothing to
// authorize.
type unserved struct {
	name   string   // the credential scope's service name
	served []string // the services lambdaplane serves
}

func (u *unserved) message() string {
	return fmt.Sprintf("lambdaplane does not serve the %s service (the request is signed for service %q); it serves %s. Send %s requests to AWS or to a server that provides them.",
		u.name, u.name, strings.Join(u.served, ", "), u.name)
}

func (s *Server) unservedFor(name string) *unserved {
	served := make([]string, 0, len(s.services))
	for n := range s.services {
		served = append(served, n)
	}
	sort.Strings(served)
	if len(name) > 64 {
		name = name[:64]
	}
	return &unserved{name: name, served: served}
}

func (u *unserved) write(w http.ResponseWriter, r *http.Request) {
	reqID := requestID()
	h := w.Header()
	h.Set("X-Amzn-RequestId", reqID)
	msg := u.message()
	status := http.StatusBadRequest
	switch {
	case u.name == "s3" || u.name == "s3-object-lambda" || u.name == "s3express":
		h.Set("Content-Type", "application/xml")
		h.Set("X-Amz-Request-Id", reqID)
		w.WriteHeader(status)
		var b strings.Builder
		b.WriteString(xml.Header)
		b.WriteString("<Error><Code>" + UnservedCode + "</Code><Message>")
		_ = xml.EscapeText(&b, []byte(msg))
		b.WriteString("</Message><Resource>")
		_ = xml.EscapeText(&b, []byte(r.URL.Path))
		b.WriteString("</Resource><RequestId>" + reqID + "</RequestId></Error>")
		_, _ = w.Write([]byte(b.String()))
	case r.Header.Get("X-Amz-Target") != "":
		ct := r.Header.Get("Content-Type")
		if !strings.HasPrefix(ct, "application/x-amz-json-") {
			ct = "application/x-amz-json-1.1"
		}
		h.Set("Content-Type", ct)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": UnservedCode, "message": msg})
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") || r.URL.Query().Get("Action") != "":
		h.Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		var b strings.Builder
		b.WriteString(xml.Header)
		b.WriteString("<ErrorResponse><Error><Type>Sender</Type><Code>" + UnservedCode + "</Code><Message>")
		_ = xml.EscapeText(&b, []byte(msg))
		b.WriteString("</Message></Error><RequestId>" + reqID + "</RequestId></ErrorResponse>")
		_, _ = w.Write([]byte(b.String()))
	default: // REST-JSON
		h.Set("Content-Type", "application/json")
		h.Set("X-Amzn-ErrorType", UnservedCode)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": UnservedCode, "message": msg, "Message": msg})
	}
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
