package sqs

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// MaxBatchBytes bounds a batch's messages together, and MaxBatch its
// entries.
const (
	MaxBatchBytes = 262144
	MaxBatch      = 10
)

// Message headers.
const (
	hID     = "Lp-Id"
	hSent   = "Lp-Sent"
	hSender = "Lp-Sender"
	hAttrs  = "Lp-Attrs"
	hSys    = "Lp-Sys"
	hGroup  = "Lp-Group"
	hDedup  = "Lp-Dedup"
	hDue    = "Lp-Due"
)

// MessageAttributeValue is one message attribute.
type MessageAttributeValue struct {
	DataType         string   `json:"t"`
	StringValue      string   `json:"s,omitempty"`
	BinaryValue      []byte   `json:"b,omitempty"`
	StringListValues []string `json:"sl,omitempty"`
	BinaryListValues [][]byte `json:"bl,omitempty"`
}

// SendInput is one message to send.
type SendInput struct {
	Body string
	// DelaySeconds overrides the queue's DelaySeconds when not nil.
	DelaySeconds      *int
	MessageAttributes map[string]MessageAttributeValue
	// SystemAttributes: AWSTraceHeader only.
	SystemAttributes map[string]MessageAttributeValue
	GroupID          string
	DeduplicationID  string
	// SenderID is the SenderId attribute (the sender's account or user).
	SenderID string
}

// SendResult is what a send returns.
type SendResult struct {
	MessageID              string
	MD5OfBody              string
	MD5OfMessageAttributes string
	MD5OfSystemAttributes  string
	SequenceNumber         string
}

// Message is a received message. Attributes holds every system attribute
// and MessageAttributes every message attribute; the API keeps the ones a
// request names.
type Message struct {
	MessageID         string
	ReceiptHandle     string
	Body              string
	MD5OfBody         string
	Attributes        map[string]string
	MessageAttributes map[string]MessageAttributeValue
	// Sequence is the message's stream sequence.
	Sequence uint64
}

// MD5OfAttributes is SQS's MD5 of message attributes: for each attribute
// in name order, the name, data type, a transport byte (1 string, 2
// binary, 3 string list, 4 binary list) and the value, each
// length-prefixed (4 bytes, big endian). "" for none.
func MD5OfAttributes(attrs map[string]MessageAttributeValue) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	slices.Sort(names)
	h := md5.New()
	put := func(b []byte) {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		h.Write(l[:])
		h.Write(b)
	}
	for _, n := range names {
		a := attrs[n]
		put([]byte(n))
		put([]byte(a.DataType))
		switch {
		case strings.HasPrefix(a.DataType, "Binary"):
			h.Write([]byte{2})
			put(a.BinaryValue)
		default:
			h.Write([]byte{1})
			put([]byte(a.StringValue))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MD5Hex is the hexadecimal MD5 of s.
func MD5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// validBody reports the first character SQS refuses in a body.
func validBody(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return errf(KindInvalidMessageContents, "Invalid binary character was found in the message body (not UTF-8 at byte %d).", i)
			}
		}
		if r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF) {
			continue
		}
		return errf(KindInvalidMessageContents, "Invalid binary character '#x%X' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF", r)
	}
	return nil
}

// validateAttrs checks message attributes and returns their size.
func validateAttrs(attrs map[string]MessageAttributeValue, system bool) (int, error) {
	if len(attrs) > 10 {
		return 0, errf(KindInvalidParameterValue, "Number of message attributes [%d] exceeds the allowed maximum [10].", len(attrs))
	}
	size := 0
	for n, a := range attrs {
		if system {
			if n != "AWSTraceHeader" {
				return 0, errf(KindInvalidParameterValue, "Message system attribute name '%s' is invalid.", n)
			}
		} else if err := validAttrName(n); err != nil {
			return 0, err
		}
		base, _, _ := strings.Cut(a.DataType, ".")
		switch base {
		case "String", "Number":
			if a.StringValue == "" {
				return 0, errf(KindInvalidParameterValue, "Message (user) attribute '%s' must contain a non-empty message attribute value for message attribute type '%s'.", n, base)
			}
			if base == "Number" {
				if _, err := strconv.ParseFloat(a.StringValue, 64); err != nil {
					return 0, errf(KindInvalidParameterValue, "Can't cast the value of message (user) attribute '%s' to a number.", n)
				}
			}
			if err := validBody(a.StringValue); err != nil {
				return 0, errf(KindInvalidParameterValue, "Message (user) attribute '%s' value contains invalid characters.", n)
			}
			size += len(a.StringValue)
		case "Binary":
			if len(a.BinaryValue) == 0 {
				return 0, errf(KindInvalidParameterValue, "Message (user) attribute '%s' must contain a non-empty message attribute value for message attribute type 'Binary'.", n)
			}
			size += len(a.BinaryValue)
		case "":
			return 0, errf(KindInvalidParameterValue, "The message attribute '%s' must contain non-empty message attribute type.", n)
		default:
			return 0, errf(KindInvalidParameterValue, "The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", n)
		}
		if system && base != "String" {
			return 0, errf(KindInvalidParameterValue, "The message system attribute AWSTraceHeader must be of type String.")
		}
		size += len(n) + len(a.DataType)
	}
	return size, nil
}

func validAttrName(n string) error {
	bad := n == "" || len(n) > 256 || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".") || strings.Contains(n, "..")
	low := strings.ToLower(n)
	if strings.HasPrefix(low, "aws.") || strings.HasPrefix(low, "amazon.") {
		return errf(KindInvalidParameterValue, "You can't use message attribute names beginning with 'AWS.' or 'Amazon.'. These strings are reserved for internal use: '%s'.", n)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			bad = true
		}
	}
	if bad {
		return errf(KindInvalidParameterValue, "Message (user) attribute name '%s' is invalid. Names may use letters, digits, '_', '-' and '.', up to 256 characters, not starting or ending with '.' nor containing '..'.", n)
	}
	return nil
}

// MessageSize is the size SQS counts against MaximumMessageSize.
func (in *SendInput) size() (int, error) {
	n, err := validateAttrs(in.MessageAttributes, false)
	if err != nil {
		return 0, err
	}
	return len(in.Body) + n, nil
}

// validate checks one message for rec.
func (q *Queues) validate(rec *Queue, in *SendInput) (int, error) {
	if in.Body == "" {
		return 0, errf(KindMissingParameter, "The request must contain the parameter MessageBody.")
	}
	if err := validBody(in.Body); err != nil {
		return 0, err
	}
	size, err := in.size()
	if err != nil {
		return 0, err
	}
	if _, err := validateAttrs(in.SystemAttributes, true); err != nil {
		return 0, err
	}
	if maxSize := rec.MaxMessageSize(); size > maxSize {
		return 0, errf(KindInvalidParameterValue, "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", maxSize)
	}
	if in.DelaySeconds != nil {
		if rec.Fifo {
			return 0, errf(KindInvalidParameterValue, "Value %d for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.", *in.DelaySeconds)
		}
		if *in.DelaySeconds < 0 || *in.DelaySeconds > 900 {
			return 0, errf(KindInvalidParameterValue, "Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided.", *in.DelaySeconds)
		}
	}
	if rec.Fifo {
		if in.GroupID == "" {
			return 0, errf(KindMissingParameter, "The request must contain the parameter MessageGroupId.")
		}
		if err := validFifoID("MessageGroupId", in.GroupID); err != nil {
			return 0, err
		}
		if in.DeduplicationID == "" && !rec.ContentBasedDeduplication() {
			return 0, errf(KindInvalidParameterValue, "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly")
		}
		if in.DeduplicationID != "" {
			if err := validFifoID("MessageDeduplicationId", in.DeduplicationID); err != nil {
				return 0, err
			}
		}
	} else if in.DeduplicationID != "" {
		return 0, errf(KindInvalidParameterValue, "The request include parameter MessageDeduplicationId that is not valid for this queue type")
	}
	return size, nil
}

func validFifoID(param, v string) error {
	if len(v) > 128 {
		return errf(KindInvalidParameterValue, "Value %s for parameter %s is invalid. Reason: %s can only include alphanumeric and punctuation characters. 1 to 128 in length.", v, param, param)
	}
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			return errf(KindInvalidParameterValue, "Value %s for parameter %s is invalid. Reason: %s can only include alphanumeric and punctuation characters. 1 to 128 in length.", v, param, param)
		}
	}
	return nil
}

// build makes the stream message for in.
func (q *Queues) build(rec *Queue, in *SendInput, id string, now time.Time) (*nats.Msg, time.Duration) {
	delay := rec.Delay()
	if in.DelaySeconds != nil {
		delay = time.Duration(*in.DelaySeconds) * time.Second
	}
	m := &nats.Msg{Header: nats.Header{}, Data: []byte(in.Body)}
	m.Header.Set(hID, id)
	m.Header.Set(hSent, strconv.FormatInt(now.UnixMilli(), 10))
	if in.SenderID != "" {
		m.Header.Set(hSender, in.SenderID)
	}
	if len(in.MessageAttributes) > 0 {
		b, _ := json.Marshal(in.MessageAttributes)
		m.Header.Set(hAttrs, base64.RawStdEncoding.EncodeToString(b))
	}
	if len(in.SystemAttributes) > 0 {
		b, _ := json.Marshal(in.SystemAttributes)
		m.Header.Set(hSys, base64.RawStdEncoding.EncodeToString(b))
	}
	ttl := rec.Retention()
	if rec.Fifo {
		m.Subject = rec.subjGroups() + "." + hex.EncodeToString([]byte(in.GroupID))
		m.Header.Set(hGroup, in.GroupID)
		dedup := in.DeduplicationID
		if dedup == "" {
			sum := sha256.Sum256([]byte(in.Body))
			dedup = hex.EncodeToString(sum[:])
		}
		m.Header.Set(hDedup, dedup)
		scope := ""
		if rec.Attributes["DeduplicationScope"] == "messageGroup" {
			scope = in.GroupID + ":"
		}
		m.Header.Set(jetstream.MsgIDHeader, rec.ID+":"+scope+dedup)
		if delay > 0 {
			m.Header.Set(hDue, strconv.FormatInt(now.Add(delay).UnixMilli(), 10))
		}
		m.Header.Set("Nats-TTL", strconv.Itoa(int(ttl.Seconds()))+"s")
		return m, 0
	}
	if delay > 0 {
		at := now.Add(delay).Truncate(time.Second).Add(time.Second)
		m.Subject = rec.subjDelayed() + "." + strings.ReplaceAll(id, "-", "")
		m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339))
		m.Header.Set("Nats-Schedule-Target", rec.subjMain())
		m.Header.Set("Nats-Schedule-TTL", strconv.Itoa(int(max(ttl-delay, time.Second).Seconds()))+"s")
		return m, delay
	}
	m.Subject = rec.subjMain()
	m.Header.Set("Nats-TTL", strconv.Itoa(int(ttl.Seconds()))+"s")
	return m, 0
}

func (q *Queues) result(rec *Queue, in *SendInput, id string, ack *jetstream.PubAck) SendResult {
	r := SendResult{MessageID: id, MD5OfBody: MD5Hex(in.Body), MD5OfMessageAttributes: MD5OfAttributes(in.MessageAttributes), MD5OfSystemAttributes: MD5OfAttributes(in.SystemAttributes)}
	if rec.Fifo && ack != nil {
		r.SequenceNumber = fmt.Sprintf("%020d", ack.Sequence)
		if ack.Duplicate {
			// The message this one duplicates keeps its id.
			if m, err := q.stream.GetMsg(context.Background(), ack.Sequence); err == nil && m.Header.Get(hID) != "" {
				r.MessageID = m.Header.Get(hID)
			}
		}
	}
	return r
}

// Send sends one message to the queue arn names.
func (q *Queues) Send(ctx context.Context, arn string, in SendInput) (SendResult, error) {
	rec, err := q.Lookup(ctx, arn)
	if err != nil {
		return SendResult{}, err
	}
	return q.SendTo(ctx, rec, in)
}

// SendTo sends one message to rec.
func (q *Queues) SendTo(ctx context.Context, rec *Queue, in SendInput) (SendResult, error) {
	if _, err := q.validate(rec, &in); err != nil {
		return SendResult{}, err
	}
	id := newMessageID()
	m, _ := q.build(rec, &in, id, q.now())
	ack, err := q.js.PublishMsg(ctx, m)
	if err != nil {
		return SendResult{}, fmt.Errorf("store the message: %w", err)
	}
	return q.result(rec, &in, id, ack), nil
}

// SendBatch sends up to ten messages at once: they are published together
// and acknowledged after one wait. The results and errors are by entry.
func (q *Queues) SendBatch(ctx context.Context, rec *Queue, ins []SendInput) ([]SendResult, []error, error) {
	if len(ins) == 0 {
		return nil, nil, errf(KindEmptyBatchRequest, "There should be at least one SendMessageBatchRequestEntry in the request.")
	}
	if len(ins) > MaxBatch {
		return nil, nil, errf(KindTooManyEntriesInBatchRequest, "Maximum number of entries per request are 10. You have sent %d.", len(ins))
	}
	total := 0
	for i := range ins {
		total += len(ins[i].Body)
		n, _ := validateAttrs(ins[i].MessageAttributes, false)
		total += n
	}
	if total > MaxBatchBytes {
		return nil, nil, errf(KindBatchRequestTooLong, "Batch requests cannot be longer than %d bytes. You have sent %d bytes.", MaxBatchBytes, total)
	}
	results := make([]SendResult, len(ins))
	errs := make([]error, len(ins))
	futures := make([]jetstream.PubAckFuture, len(ins))
	ids := make([]string, len(ins))
	now := q.now()
	// Standard queues' entries are published at once and their
	// acknowledgements waited for together. (A JetStream atomic batch
	// syncs once per batch but measured slower here: see Floor.)
	for i := range ins {
		if _, err := q.validate(rec, &ins[i]); err != nil {
			errs[i] = err
			continue
		}
		ids[i] = newMessageID()
		m, _ := q.build(rec, &ins[i], ids[i], now)
		if rec.Fifo {
			// FIFO order within the batch: one after the other.
			ack, err := q.js.PublishMsg(ctx, m)
			if err != nil {
				errs[i] = fmt.Errorf("store the message: %w", err)
				continue
			}
			results[i] = q.result(rec, &ins[i], ids[i], ack)
			continue
		}
		f, err := q.js.PublishMsgAsync(m)
		if err != nil {
			errs[i] = fmt.Errorf("store the message: %w", err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			results[i] = q.result(rec, &ins[i], ids[i], ack)
		case err := <-f.Err():
			errs[i] = fmt.Errorf("store the message: %w", err)
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return results, errs, nil
}

// publishAtomic stores msgs as one JetStream atomic batch: all or none,
// acknowledged (and synced to disk) once.
func (q *Queues) publishAtomic(ctx context.Context, msgs []*nats.Msg) error {
	if len(msgs) == 1 {
		_, err := q.js.PublishMsg(ctx, msgs[0])
		return err
	}
	id := nuid.Next()
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := q.nc.PublishMsg(m); err != nil {
				return err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := q.nc.RequestMsgWithContext(rctx, m)
		if err != nil {
			return err
		}
		var ack struct {
			Error *struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			} `json:"error"`
			Count int `json:"count"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return fmt.Errorf("batch acknowledgement: %w", err)
		}
		if ack.Error != nil {
			return fmt.Errorf("batch refused: %s (%d)", ack.Error.Description, ack.Error.Code)
		}
		if ack.Count != len(msgs) {
			return fmt.Errorf("batch stored %d of %d messages", ack.Count, len(msgs))
		}
	}
	return nil
}

// ReceiveOptions is a receive request.
type ReceiveOptions struct {
	Max int
	// Visibility < 0 means the queue's VisibilityTimeout.
	Visibility time.Duration
	// Wait < 0 means the queue's ReceiveMessageWaitTimeSeconds.
	Wait time.Duration
}

// Receive receives up to max messages from the queue arn names;
// visibility < 0 is the queue's timeout, wait < 0 the queue's wait time.
func (q *Queues) Receive(ctx context.Context, arn string, max int, visibility, wait time.Duration) ([]Message, error) {
	rec, err := q.Lookup(ctx, arn)
	if err != nil {
		return nil, err
	}
	return q.ReceiveFrom(ctx, rec, ReceiveOptions{Max: max, Visibility: visibility, Wait: wait})
}

// ReceiveFrom receives from rec.
func (q *Queues) ReceiveFrom(ctx context.Context, rec *Queue, o ReceiveOptions) ([]Message, error) {
	if o.Max < 1 || o.Max > 10 {
		return nil, errf(KindInvalidParameterValue, "Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", o.Max)
	}
	if o.Visibility < 0 {
		o.Visibility = rec.VisibilityTimeout()
	}
	if o.Wait < 0 {
		o.Wait = rec.WaitTime()
	}
	if o.Wait > 20*time.Second {
		return nil, errf(KindInvalidParameterValue, "Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", int(o.Wait.Seconds()))
	}
	if o.Visibility > 12*time.Hour {
		return nil, errf(KindInvalidParameterValue, "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", int(o.Visibility.Seconds()))
	}
	if rec.Fifo {
		return q.receiveFifo(ctx, rec, o)
	}
	return q.receiveStandard(ctx, rec, o)
}

func (q *Queues) receiveStandard(ctx context.Context, rec *Queue, o ReceiveOptions) ([]Message, error) {
	c, err := q.consumer(ctx, rec)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(o.Wait)
	var out []Message
	for {
		b, err := c.FetchNoWait(o.Max - len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, q.accept(ctx, rec, b, o)...)
		if len(out) > 0 || o.Wait <= 0 {
			return out, nil
		}
		left := time.Until(deadline)
		if left < 10*time.Millisecond || ctx.Err() != nil {
			return out, nil
		}
		// Long poll: wait for one message, then take what else is there.
		b, err = c.Fetch(1, jetstream.FetchMaxWait(left))
		if err != nil {
			return nil, err
		}
		got := q.accept(ctx, rec, b, o)
		if ctx.Err() != nil {
			for _, m := range got {
				_ = q.nakHandle(rec, m.ReceiptHandle, 0)
			}
			return nil, ctx.Err()
		}
		out = append(out, got...)
		if len(out) > 0 && len(out) < o.Max {
			if b, err := c.FetchNoWait(o.Max - len(out)); err == nil {
				out = append(out, q.accept(ctx, rec, b, o)...)
			}
		}
		if len(out) > 0 || time.Until(deadline) < 10*time.Millisecond {
			return out, nil
		}
	}
}

// accept turns a fetched batch into messages, moving those past the
// queue's maxReceiveCount to its dead-letter queue.
func (q *Queues) accept(ctx context.Context, rec *Queue, b jetstream.MessageBatch, o ReceiveOptions) []Message {
	var out []Message
	redrive := rec.Redrive()
	now := q.now()
	for m := range b.Messages() {
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		if redrive != nil && int(md.NumDelivered) > redrive.MaxReceiveCount {
			if err := q.moveToDLQ(ctx, rec, redrive, m.Headers(), m.Data()); err != nil {
				q.log.Warn("moving a message to its dead-letter queue", "queue", rec.Name, "dlq", redrive.DeadLetterTargetArn, "err", err)
				continue
			}
			_ = m.DoubleAck(ctx)
			continue
		}
		msg := decode(m.Headers(), m.Data())
		msg.Sequence = md.Sequence.Stream
		msg.ReceiptHandle = encodeHandle("s", rec.ID, m.Reply())
		msg.Attributes["ApproximateReceiveCount"] = strconv.FormatUint(md.NumDelivered, 10)
		first := now.UnixMilli()
		key := firstKey(rec.ID, msg.Sequence)
		ackWait := max(rec.VisibilityTimeout(), time.Second)
		if md.NumDelivered == 1 {
			q.firsts.note(key, first, o.Visibility < firstFlushAfter)
		} else if ms, ok := q.firsts.get(ctx, key); ok {
			first = ms
		}
		msg.Attributes["ApproximateFirstReceiveTimestamp"] = strconv.FormatInt(first, 10)
		if o.Visibility != ackWait {
			_ = m.NakWithDelay(o.Visibility)
		}
		out = append(out, msg)
	}
	return out
}

// decode rebuilds a message from its stream form.
func decode(h nats.Header, body []byte) Message {
	msg := Message{MessageID: h.Get(hID), Body: string(body), Attributes: map[string]string{}}
	msg.MD5OfBody = MD5Hex(msg.Body)
	msg.Attributes["SentTimestamp"] = h.Get(hSent)
	if s := h.Get(hSender); s != "" {
		msg.Attributes["SenderId"] = s
	}
	if a := h.Get(hAttrs); a != "" {
		if b, err := base64.RawStdEncoding.DecodeString(a); err == nil {
			_ = json.Unmarshal(b, &msg.MessageAttributes)
		}
	}
	if a := h.Get(hSys); a != "" {
		if b, err := base64.RawStdEncoding.DecodeString(a); err == nil {
			var sys map[string]MessageAttributeValue
			if json.Unmarshal(b, &sys) == nil {
				if v, ok := sys["AWSTraceHeader"]; ok {
					msg.Attributes["AWSTraceHeader"] = v.StringValue
				}
			}
		}
	}
	if g := h.Get(hGroup); g != "" {
		msg.Attributes["MessageGroupId"] = g
		msg.Attributes["MessageDeduplicationId"] = h.Get(hDedup)
	}
	return msg
}

// moveToDLQ stores a message in rec's dead-letter queue.
func (q *Queues) moveToDLQ(ctx context.Context, rec *Queue, p *RedrivePolicy, h nats.Header, body []byte) error {
	dlq, err := q.Lookup(ctx, p.DeadLetterTargetArn)
	if err != nil {
		return err
	}
	m := &nats.Msg{Header: nats.Header{}, Data: body}
	for _, k := range []string{hID, hSent, hSender, hAttrs, hSys, hGroup, hDedup} {
		if v := h.Get(k); v != "" {
			m.Header.Set(k, v)
		}
	}
	m.Header.Set("Nats-TTL", strconv.Itoa(int(dlq.Retention().Seconds()))+"s")
	if dlq.Fifo {
		m.Subject = dlq.subjGroups() + "." + hex.EncodeToString([]byte(h.Get(hGroup)))
	} else {
		m.Subject = dlq.subjMain()
	}
	if _, err := q.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	q.log.Info("message moved to the dead-letter queue", "queue", rec.Name, "dlq", dlq.Name, "message", h.Get(hID))
	return nil
}

// Receipt handles: base64url of kind|queue id|reference. A standard
// queue's reference is the consumer's ack subject; a FIFO queue's is
// group|sequence|token.
func encodeHandle(kind, qid, ref string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "|" + qid + "|" + ref))
}

func decodeHandle(rec *Queue, h string) (kind, ref string, err error) {
	invalid := errf(KindReceiptHandleIsInvalid, "The input receipt handle \"%s\" is not a valid receipt handle.", h)
	b, e := base64.RawURLEncoding.DecodeString(h)
	if e != nil {
		return "", "", invalid
	}
	parts := strings.SplitN(string(b), "|", 3)
	if len(parts) != 3 || parts[1] != rec.ID {
		return "", "", invalid
	}
	switch parts[0] {
	case "s":
		// $JS.ACK.<stream>.<consumer>.… or $JS.ACK.<domain>.<hash>.<stream>.<consumer>.…
		t := strings.Split(parts[2], ".")
		if len(t) < 9 || t[0] != "$JS" || t[1] != "ACK" {
			return "", "", invalid
		}
		if !(t[2] == streamName && t[3] == rec.consumerName()) && !(len(t) >= 11 && t[4] == streamName && t[5] == rec.consumerName()) {
			return "", "", invalid
		}
	case "f":
		if !rec.Fifo {
			return "", "", invalid
		}
	default:
		return "", "", invalid
	}
	return parts[0], parts[2], nil
}

// ackSeq is the stream sequence of an ack subject.
func ackSeq(subject string) uint64 {
	t := strings.Split(subject, ".")
	i := 5
	if len(t) >= 11 {
		i = 7
	}
	if len(t) <= i {
		return 0
	}
	n, _ := strconv.ParseUint(t[i], 10, 64)
	return n
}

// DeleteMessage deletes one received message.
func (q *Queues) DeleteMessage(ctx context.Context, rec *Queue, handle string) error {
	return q.DeleteMessages(ctx, rec, []string{handle})[0]
}

// DeleteMessages deletes received messages; the errors are by handle.
func (q *Queues) DeleteMessages(ctx context.Context, rec *Queue, handles []string) []error {
	errs := make([]error, len(handles))
	var wg sync.WaitGroup
	for i, h := range handles {
		kind, ref, err := decodeHandle(rec, h)
		if err != nil {
			errs[i] = err
			continue
		}
		if kind == "f" {
			errs[i] = q.deleteFifo(ctx, rec, ref)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := q.nc.RequestWithContext(rctx, ref, []byte("+ACK")); err != nil {
				errs[i] = fmt.Errorf("delete the message: %w", err)
				return
			}
			q.firsts.forget(firstKey(rec.ID, ackSeq(ref)))
		}()
	}
	wg.Wait()
	return errs
}

// Delete deletes one received message of the queue arn names.
func (q *Queues) Delete(ctx context.Context, arn, handle string) error {
	rec, err := q.Lookup(ctx, arn)
	if err != nil {
		return err
	}
	return q.DeleteMessage(ctx, rec, handle)
}

// DeleteBatch deletes received messages of the queue arn names.
func (q *Queues) DeleteBatch(ctx context.Context, arn string, handles []string) error {
	rec, err := q.Lookup(ctx, arn)
	if err != nil {
		return err
	}
	return errors.Join(q.DeleteMessages(ctx, rec, handles)...)
}

// ChangeVisibility makes a received message visible again after d.
func (q *Queues) ChangeVisibility(ctx context.Context, arn, handle string, d time.Duration) error {
	rec, err := q.Lookup(ctx, arn)
	if err != nil {
		return err
	}
	return q.ChangeMessageVisibility(ctx, rec, handle, d)
}

// ChangeMessageVisibility is ChangeVisibility on rec.
func (q *Queues) ChangeMessageVisibility(ctx context.Context, rec *Queue, handle string, d time.Duration) error {
	if d < 0 || d > 12*time.Hour {
		return errf(KindInvalidParameterValue, "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided.", int(d.Seconds()))
	}
	kind, ref, err := decodeHandle(rec, handle)
	if err != nil {
		return err
	}
	if kind == "f" {
		return q.changeFifo(ctx, rec, ref, d)
	}
	if _, err := q.stream.GetMsg(ctx, ackSeq(ref)); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return errf(KindMessageNotInflight, "Message does not exist or is not available for visibility timeout change.")
		}
		return err
	}
	return q.nakHandle(rec, handle, d)
}

func (q *Queues) nakHandle(rec *Queue, handle string, d time.Duration) error {
	_, ref, err := decodeHandle(rec, handle)
	if err != nil {
		return err
	}
	q.firsts.flush(firstKey(rec.ID, ackSeq(ref))) // it comes back after d
	body := []byte("-NAK")
	if d > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay": %d}`, d.Nanoseconds())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := q.nc.RequestWithContext(ctx, ref, body); err != nil {
		return fmt.Errorf("change the message's visibility: %w", err)
	}
	return nil
}

// Notify returns a channel that receives (without blocking the sender)
// whenever a message is stored in the queue arn names; stop ends it.
func (q *Queues) Notify(ctx context.Context, arn string) (<-chan struct{}, func(), error) {
	rec, err := q.Lookup(ctx, arn)
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{}, 1)
	sub, err := q.nc.Subscribe(rec.subjAll(), func(*nats.Msg) {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return ch, func() { _ = sub.Unsubscribe() }, nil
}
