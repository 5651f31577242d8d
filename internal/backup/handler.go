package backup

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Path is the admin API path of backups on the server's API listener.
const Path = "/_lambdaplane/backup"

// Trailers of a stream's snapshot response: the error that cut it short
// ("" when complete) and the snapshot bytes sent.
const (
	TrailerError = "X-Lambdaplane-Snapshot-Error"
	TrailerBytes = "X-Lambdaplane-Snapshot-Bytes"
)

// Handler serves backups from st:
//
//	GET Path              the streams, in backup order (JSON []store.StreamSummary)
//	GET Path?stream=NAME  one stream: a line of JSON (store.SnapshotMeta), then
//	                      the snapshot; trailers TrailerError and TrailerBytes
//
// authorized decides whether a request carries the operator's token.
func Handler(st *store.Store, authorized func(*http.Request) bool) http.Handler {
	return &handler{st: st, authorized: authorized}
}

type handler struct {
	st         *store.Store
	authorized func(*http.Request) bool
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		http.Error(w, `{"Message":"admin token missing or wrong: run lambdaplane backup on the server host (it reads <data>/admin-token)"}`, http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// A snapshot takes as long as it takes: no read deadline may cancel it.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	name := r.URL.Query().Get("stream")
	if name == "" {
		list, err := h.st.Streams(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
		return
	}
	w.Header().Set("Trailer", TrailerError+", "+TrailerBytes)
	w.Header().Set("Content-Type", "application/octet-stream")
	started := false
	n, err := h.st.Snapshot(r.Context(), name, w, func(md store.SnapshotMeta) error {
		b, err := json.Marshal(md)
		if err != nil {
			return err
		}
		started = true
		_, err = w.Write(append(b, '\n'))
		return err
	})
	if !started {
		// Nothing sent yet: a plain error status.
		if err == nil {
			err = errors.New("the snapshot ended before it began")
		}
		status := http.StatusInternalServerError
		if errors.Is(err, store.ErrNotFound) {
			status = http.StatusNotFound
		}
		w.Header().Del("Trailer")
		http.Error(w, err.Error(), status)
		return
	}
	if err != nil {
		w.Header().Set(TrailerError, err.Error())
	}
	w.Header().Set(TrailerBytes, strconv.FormatInt(n, 10))
}
