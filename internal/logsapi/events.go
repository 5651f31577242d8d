package logsapi

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/logs"
)

// Limits of one response, as on CloudWatch Logs.
const (
	maxEvents        = 10000
	maxResponseBytes = 1 << 20
	// storeSlack bounds how long after its own time a record is stored
	// (its batch's flush delay, an acknowledgement): a scan for events up
	// to endTime stops at the first message stored this long after it.
	storeSlack = time.Minute
)

// event is one line of a stored record.
type event struct {
	fn     string
	stream string
	ts     time.Time // the record's time
	ingest time.Time // when the stream stored it
	msg    string
	key    evKey
}

// evKey is an event's stable position: message sequence, record index in
// the message, line index in the record.
type evKey struct {
	seq       uint64
	rec, line int
}

func (k evKey) less(o evKey) bool {
	if k.seq != o.seq {
		return k.seq < o.seq
	}
	if k.rec != o.rec {
		return k.rec < o.rec
	}
	return k.line < o.line
}

func (k evKey) String() string { return fmt.Sprintf("%d-%d-%d", k.seq, k.rec, k.line) }

func parseKey(s string) (evKey, bool) {
	p := strings.Split(s, "-")
	if len(p) != 3 {
		return evKey{}, false
	}
	seq, err1 := strconv.ParseUint(p[0], 10, 64)
	rec, err2 := strconv.Atoi(p[1])
	line, err3 := strconv.Atoi(p[2])
	return evKey{seq, rec, line}, err1 == nil && err2 == nil && err3 == nil
}

// eventID is the event's id: digits, stable across calls (aws logs tail
// deduplicates by it).
func (e *event) eventID() string {
	return fmt.Sprintf("%020d%06d%010d", e.key.seq, e.key.rec, e.key.line)
}

// streamOf names the log stream of a record; records stored without one
// (init failures of older versions) get one by date and version.
func streamOf(r *logs.Record) string {
	if r.LogStream != "" {
		return r.LogStream
	}
	return r.Time.UTC().Format("2006/01/02") + "/[" + r.Version + "]00000000000000000000000000000000"
}

// lines splits a record into its events: one per line, each keeping its
// newline, as Lambda's records arrive in CloudWatch Logs.
func lines(text []byte, f func(i int, line []byte) bool) bool {
	for i := 0; len(text) > 0; i++ {
		n := bytes.IndexByte(text, '\n')
		var l []byte
		if n < 0 {
			l, text = text, nil
		} else {
			l, text = text[:n+1], text[n+1:]
		}
		if !f(i, l) {
			return false
		}
	}
	return true
}

// scanRange scans a function's events with record time in [start, end]
// (end zero: no end), from after `after` when set, calling f for those
// whose stream keep accepts and whose line match accepts, until f returns
// false; it reports whether f stopped it. Lines become strings only once
// accepted.
func (s *Service) scanRange(c *call, fn string, start, end time.Time, after *evKey, keep func(stream string) bool, match func(line []byte) bool, f func(ev event) bool) (bool, error) {
	from := logs.ScanFrom{Since: start}
	if after != nil {
		from = logs.ScanFrom{Seq: after.seq}
	}
	stopped := false
	err := s.o.Logs.Scan(c.ctx, c.id.AccountID, fn, from, func(st logs.Stored) bool {
		if !end.IsZero() && st.Stored.After(end.Add(storeSlack)) {
			return false
		}
		if st.Time.Before(start) || (!end.IsZero() && st.Time.After(end)) {
			return true
		}
		stream := streamOf(&st.Record)
		if keep != nil && !keep(stream) {
			return true
		}
		return lines(st.Text, func(i int, l []byte) bool {
			key := evKey{st.Seq, st.Index, i}
			if after != nil && !after.less(key) {
				return true
			}
			if match != nil && !match(l) {
				return true
			}
			if !f(event{fn: fn, stream: stream, ts: st.Time, ingest: st.Stored, msg: string(l), key: key}) {
				stopped = true
				return false
			}
			return true
		})
	})
	return stopped, err
}

func msToTime(ms *int64) time.Time {
	if ms == nil {
		return time.Time{}
	}
	return time.UnixMilli(*ms)
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

type wireEvent struct {
	Stream  string `json:"logStreamName,omitempty"`
	Time    int64  `json:"timestamp"`
	Message string `json:"message"`
	Ingest  int64  `json:"ingestionTime"`
	ID      string `json:"eventId,omitempty"`
}

// filterToken is FilterLogEvents' nextToken: the function being read and
// the last event returned.
func filterToken(fn string, k evKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fn + "/" + k.String()))
}

func parseFilterToken(t string) (string, evKey, bool) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return "", evKey{}, false
	}
	fn, ks, ok := strings.Cut(string(b), "/")
	if !ok {
		return "", evKey{}, false
	}
	k, ok := parseKey(ks)
	return fn, k, ok
}

func (s *Service) filterLogEvents(c *call) error {
	var in struct {
		LogGroupName        string   `json:"logGroupName"`
		LogGroupIdentifier  string   `json:"logGroupIdentifier"`
		LogStreamNames      []string `json:"logStreamNames"`
		LogStreamNamePrefix string   `json:"logStreamNamePrefix"`
		StartTime           *int64   `json:"startTime"`
		EndTime             *int64   `json:"endTime"`
		FilterPattern       string   `json:"filterPattern"`
		NextToken           string   `json:"nextToken"`
		Limit               *int     `json:"limit"`
		Interleaved         *bool    `json:"interleaved"`
		Unmask              bool     `json:"unmask"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	name, err := groupName(c, in.LogGroupName, in.LogGroupIdentifier)
	if err != nil {
		return err
	}
	if len(in.LogStreamNames) > 0 && in.LogStreamNamePrefix != "" {
		return invalidParam("logStreamNames and logStreamNamePrefix are mutually exclusive: pass one of them")
	}
	if len(in.LogStreamNames) > 100 {
		return invalidParam(fmt.Sprintf("1 validation error detected: Value at 'logStreamNames' failed to satisfy constraint: Member must have length less than or equal to 100 (got %d)", len(in.LogStreamNames)))
	}
	limit, err := checkLimit(in.Limit, maxEvents)
	if err != nil {
		return err
	}
	if len(in.FilterPattern) > 1024 {
		return invalidParam("1 validation error detected: Value at 'filterPattern' failed to satisfy constraint: Member must have length less than or equal to 1024")
	}
	pat, err := Compile(in.FilterPattern)
	if err != nil {
		return err
	}
	start, end := msToTime(in.StartTime), msToTime(in.EndTime)
	if in.StartTime != nil && *in.StartTime < 0 || in.EndTime != nil && *in.EndTime < 0 {
		return invalidParam("startTime and endTime are milliseconds since the epoch and must not be negative")
	}
	if !end.IsZero() && end.Before(start) {
		return invalidParam("endTime must not be earlier than startTime")
	}
	var tokFn string
	var tokKey evKey
	if in.NextToken != "" {
		var ok bool
		if tokFn, tokKey, ok = parseFilterToken(in.NextToken); !ok {
			return invalidParam(fmt.Sprintf("The specified nextToken %q is invalid: pass the nextToken of the previous response", in.NextToken))
		}
	}
	g, err := s.getGroup(c.ctx, c.id.AccountID, name)
	if err != nil {
		return err
	}
	start = laterOf(start, g.cutoff(s.o.Now()))
	wantStream := func(string) bool { return true }
	if len(in.LogStreamNames) > 0 {
		set := map[string]bool{}
		for _, n := range in.LogStreamNames {
			set[n] = true
		}
		wantStream = func(n string) bool { return set[n] }
	} else if in.LogStreamNamePrefix != "" {
		wantStream = func(n string) bool { return strings.HasPrefix(n, in.LogStreamNamePrefix) }
	}
	events := []wireEvent{}
	searched := map[string]bool{}
	var searchedOrder []string
	size := 0
	next := ""
	for _, f := range g.Functions {
		if tokFn != "" && f.Name < tokFn {
			continue
		}
		var after *evKey
		if f.Name == tokFn {
			k := tokKey
			after = &k
		}
		keep := func(stream string) bool {
			if !wantStream(stream) {
				return false
			}
			if !searched[stream] {
				searched[stream] = true
				searchedOrder = append(searchedOrder, stream)
			}
			return true
		}
		stopped, err := s.scanRange(c, f.Name, start, end, after, keep, pat.MatchBytes, func(ev event) bool {
			if len(events) == limit || size+len(ev.msg) > maxResponseBytes {
				return false
			}
			events = append(events, wireEvent{Stream: ev.stream, Time: ev.ts.UnixMilli(), Message: ev.msg, Ingest: ev.ingest.UnixMilli(), ID: ev.eventID()})
			size += len(ev.msg)
			next = filterToken(f.Name, ev.key)
			return true
		})
		if err != nil {
			return err
		}
		if stopped {
			break
		}
		next = ""
	}
	type searchedStream struct {
		Name       string `json:"logStreamName"`
		Completely bool   `json:"searchedCompletely"`
	}
	ss := make([]searchedStream, 0, len(searchedOrder))
	for _, n := range searchedOrder {
		ss = append(ss, searchedStream{Name: n, Completely: next == ""})
	}
	resp := map[string]any{"events": events, "searchedLogStreams": ss}
	if next != "" {
		resp["nextToken"] = next
	}
	return c.reply(resp)
}

// streamEvents collects every event of one log stream of the group (in
// [start, end]), in stored order.
func (s *Service) streamEvents(c *call, g *groupView, stream string, start, end time.Time) ([]event, bool, error) {
	var out []event
	found := false
	for _, f := range g.Functions {
		_, err := s.scanRange(c, f.Name, start, time.Time{}, nil, func(n string) bool { return n == stream }, nil, func(ev event) bool {
			found = true
			if end.IsZero() || !ev.ts.After(end) {
				out = append(out, ev)
			}
			return true
		})
		if err != nil {
			return nil, false, err
		}
	}
	return out, found, nil
}

func (s *Service) getLogEvents(c *call) error {
	var in struct {
		LogGroupName       string `json:"logGroupName"`
		LogGroupIdentifier string `json:"logGroupIdentifier"`
		LogStreamName      string `json:"logStreamName"`
		StartTime          *int64 `json:"startTime"`
		EndTime            *int64 `json:"endTime"`
		NextToken          string `json:"nextToken"`
		Limit              *int   `json:"limit"`
		StartFromHead      *bool  `json:"startFromHead"`
		Unmask             bool   `json:"unmask"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	name, err := groupName(c, in.LogGroupName, in.LogGroupIdentifier)
	if err != nil {
		return err
	}
	if in.LogStreamName == "" {
		return invalidParam("logStreamName is required: list the group's streams with DescribeLogStreams")
	}
	limit, err := checkLimit(in.Limit, maxEvents)
	if err != nil {
		return err
	}
	forward := in.StartFromHead != nil && *in.StartFromHead
	var tok *evKey
	if in.NextToken != "" {
		dir, ks, ok := strings.Cut(in.NextToken, "/")
		k, kok := parseKey(ks)
		if !ok || !kok || (dir != "f" && dir != "b") {
			return invalidParam(fmt.Sprintf("The specified nextToken %q is invalid: pass nextForwardToken or nextBackwardToken of the previous response", in.NextToken))
		}
		forward = dir == "f"
		tok = &k
	}
	g, err := s.getGroup(c.ctx, c.id.AccountID, name)
	if err != nil {
		return err
	}
	start := laterOf(msToTime(in.StartTime), g.cutoff(s.o.Now()))
	all, found, err := s.streamEvents(c, g, in.LogStreamName, start, msToTime(in.EndTime))
	if err != nil {
		return err
	}
	if !found {
		return notFound("The specified log stream does not exist.")
	}
	// The page: [lo, hi) of all.
	var lo, hi int
	switch {
	case tok != nil && forward:
		lo = sort.Search(len(all), func(i int) bool { return tok.less(all[i].key) })
		hi = min(lo+limit, len(all))
	case tok != nil:
		hi = sort.Search(len(all), func(i int) bool { return !all[i].key.less(*tok) })
		lo = max(hi-limit, 0)
	case forward:
		lo, hi = 0, min(limit, len(all))
	default:
		hi = len(all)
		lo = max(hi-limit, 0)
	}
	events := make([]wireEvent, 0, hi-lo)
	size := 0
	for i := lo; i < hi; i++ {
		if size+len(all[i].msg) > maxResponseBytes {
			if forward {
				hi = i
				break
			}
			lo = i + 1
			events = events[:0]
			size = 0
			continue
		}
		events = append(events, wireEvent{Time: all[i].ts.UnixMilli(), Message: all[i].msg, Ingest: all[i].ingest.UnixMilli()})
		size += len(all[i].msg)
	}
	// At either end the token given is returned again, as on CloudWatch.
	fwd, bwd := "", ""
	switch {
	case hi > lo:
		fwd, bwd = "f/"+all[hi-1].key.String(), "b/"+all[lo].key.String()
	case tok != nil:
		fwd, bwd = "f/"+tok.String(), "b/"+tok.String()
	case len(all) > 0:
		fwd, bwd = "f/"+all[len(all)-1].key.String(), "b/"+all[0].key.String()
	default:
		fwd, bwd = "f/0-0-0", "b/0-0-0"
	}
	return c.reply(map[string]any{"events": events, "nextForwardToken": fwd, "nextBackwardToken": bwd})
}

func (s *Service) describeLogStreams(c *call) error {
	var in struct {
		LogGroupName        string `json:"logGroupName"`
		LogGroupIdentifier  string `json:"logGroupIdentifier"`
		LogStreamNamePrefix string `json:"logStreamNamePrefix"`
		OrderBy             string `json:"orderBy"`
		Descending          bool   `json:"descending"`
		NextToken           string `json:"nextToken"`
		Limit               *int   `json:"limit"`
	}
	if err := c.decode(&in); err != nil {
		return err
	}
	name, err := groupName(c, in.LogGroupName, in.LogGroupIdentifier)
	if err != nil {
		return err
	}
	switch in.OrderBy {
	case "", "LogStreamName", "LastEventTime":
	default:
		return invalidParam(fmt.Sprintf("1 validation error detected: Value '%s' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]", in.OrderBy))
	}
	if in.OrderBy == "LastEventTime" && in.LogStreamNamePrefix != "" {
		return invalidParam("Cannot order by LastEventTime with a logStreamNamePrefix.")
	}
	limit, err := checkLimit(in.Limit, 50)
	if err != nil {
		return err
	}
	offset := 0
	if in.NextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "o"))
		if err != nil || err2 != nil || n < 0 {
			return invalidParam(fmt.Sprintf("The specified nextToken %q is invalid: pass the nextToken of the previous response", in.NextToken))
		}
		offset = n
	}
	g, err := s.getGroup(c.ctx, c.id.AccountID, name)
	if err != nil {
		return err
	}
	type wire struct {
		Name      string `json:"logStreamName"`
		Created   int64  `json:"creationTime"`
		First     int64  `json:"firstEventTimestamp"`
		Last      int64  `json:"lastEventTimestamp"`
		Ingest    int64  `json:"lastIngestionTime"`
		Arn       string `json:"arn"`
		Stored    int64  `json:"storedBytes"`
		UploadTok string `json:"uploadSequenceToken"`
	}
	streams := map[string]*wire{}
	cut := g.cutoff(s.o.Now())
	for _, f := range g.Functions {
		err := s.o.Logs.Scan(c.ctx, c.id.AccountID, f.Name, logs.ScanFrom{Since: cut}, func(st logs.Stored) bool {
			if st.Time.Before(cut) {
				return true
			}
			n := streamOf(&st.Record)
			if in.LogStreamNamePrefix != "" && !strings.HasPrefix(n, in.LogStreamNamePrefix) {
				return true
			}
			w := streams[n]
			ms := st.Time.UnixMilli()
			if w == nil {
				w = &wire{Name: n, Created: ms, First: ms, Arn: g.arn(c.region(), c.id.AccountID) + ":log-stream:" + n, UploadTok: "1"}
				streams[n] = w
			}
			w.First = min(w.First, ms)
			w.Last = max(w.Last, ms)
			w.Ingest = max(w.Ingest, st.Stored.UnixMilli())
			return true
		})
		if err != nil {
			return err
		}
	}
	list := make([]*wire, 0, len(streams))
	for _, w := range streams {
		list = append(list, w)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if in.Descending {
			a, b = b, a
		}
		if in.OrderBy == "LastEventTime" && a.Last != b.Last {
			return a.Last < b.Last
		}
		return a.Name < b.Name
	})
	if offset > len(list) {
		offset = len(list)
	}
	page := list[offset:]
	resp := map[string]any{}
	if len(page) > limit {
		page = page[:limit]
		resp["nextToken"] = base64.RawURLEncoding.EncodeToString([]byte("o" + strconv.Itoa(offset+limit)))
	}
	resp["logStreams"] = page
	return c.reply(resp)
}
