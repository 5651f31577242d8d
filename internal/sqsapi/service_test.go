package sqsapi

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

// Every kind the engine returns has a wire form; the table is the one
// place that says which.
func TestErrorTable(t *testing.T) {
	kinds := []string{sqs.KindQueueDoesNotExist, sqs.KindQueueNameExists, sqs.KindInvalidAttributeName, sqs.KindInvalidAttributeValue,
		sqs.KindInvalidParameterValue, sqs.KindMissingParameter, sqs.KindInvalidMessageContents, sqs.KindReceiptHandleIsInvalid,
		sqs.KindMessageNotInflight, sqs.KindPurgeQueueInProgress, sqs.KindTooManyEntriesInBatchRequest, sqs.KindEmptyBatchRequest,
		sqs.KindBatchEntryIdsNotDistinct, sqs.KindInvalidBatchEntryId, sqs.KindBatchRequestTooLong, sqs.KindAccessDenied}
	for _, k := range kinds {
		if _, ok := errorTable[k]; !ok {
			t.Errorf("kind %s has no wire form", k)
		}
	}
	if k, _ := classify(&auth.AccessDenied{Caller: "u", Action: "sqs:SendMessage", Resource: "q"}); k != sqs.KindAccessDenied {
		t.Fatalf("AccessDenied classified as %s", k)
	}
	if k, _ := classify(errors.New("boom")); k != sqs.KindInternal {
		t.Fatalf("unexpected error classified as %s", k)
	}
}

func TestErrorWireForms(t *testing.T) {
	s := New(nil, nil, nil)
	err := &sqs.Error{Kind: sqs.KindQueueDoesNotExist, Message: "The specified queue does not exist."}
	// Query: XML with the Query code.
	w := httptest.NewRecorder()
	s.writeErr(w, &call{r: httptest.NewRequest("POST", "/", nil)}, err)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "<Code>AWS.SimpleQueueService.NonExistentQueue</Code>") || !strings.Contains(w.Body.String(), `xmlns="http://queue.amazonaws.com/doc/2012-11-05/"`) || !strings.Contains(w.Body.String(), "<Type>Sender</Type>") {
		t.Fatalf("query error: %d %s", w.Code, w.Body)
	}
	// JSON: __type and the query-error header.
	w = httptest.NewRecorder()
	s.writeErr(w, &call{r: httptest.NewRequest("POST", "/", nil), json: true}, err)
	var body map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if body["__type"] != "com.amazonaws.sqs#QueueDoesNotExist" || w.Header().Get("x-amzn-query-error") != "AWS.SimpleQueueService.NonExistentQueue;Sender" {
		t.Fatalf("json error: %v %v", body, w.Header())
	}
}

// QueueDeletedRecently in both protocols, as SQS sends it.
func TestQueueDeletedRecentlyWire(t *testing.T) {
	s := New(nil, nil, nil)
	err := &sqs.Error{Kind: sqs.KindQueueDeletedRecently, Message: "You must wait 60 seconds after deleting a queue before you can create another with the same name."}
	w := httptest.NewRecorder()
	s.writeErr(w, &call{r: httptest.NewRequest("POST", "/", nil)}, err)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "<Code>AWS.SimpleQueueService.QueueDeletedRecently</Code>") {
		t.Fatalf("query error: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	s.writeErr(w, &call{r: httptest.NewRequest("POST", "/", nil), json: true}, err)
	var body map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != 400 || body["__type"] != "com.amazonaws.sqs#QueueDeletedRecently" || w.Header().Get("x-amzn-query-error") != "AWS.SimpleQueueService.QueueDeletedRecently;Sender" {
		t.Fatalf("json error: %d %v %v", w.Code, body, w.Header())
	}
}

func TestQueryParams(t *testing.T) {
	form, _ := url.ParseQuery("SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two&" +
		"SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one&" +
		"SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String&" +
		"SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v&Attribute.1.Name=DelaySeconds&Attribute.1.Value=5&AttributeName.1=All")
	p := queryParams{form: form}
	es := p.entries("Entries", "SendMessageBatchRequestEntry")
	if len(es) != 2 {
		t.Fatalf("%d entries", len(es))
	}
	if id, _ := es[0].str("Id"); id != "a" {
		t.Fatalf("entries out of order: %s", id)
	}
	ma, err := es[0].msgAttrs("MessageAttributes", "MessageAttribute")
	if err != nil || ma["k"].StringValue != "v" || ma["k"].DataType != "String" {
		t.Fatalf("attributes %v %v", ma, err)
	}
	if m := p.strMap("Attributes", []string{"Attribute"}, "Name", "Value"); m["DelaySeconds"] != "5" {
		t.Fatalf("map %v", m)
	}
	if l := p.list("AttributeNames", "AttributeName"); len(l) != 1 || l[0] != "All" {
		t.Fatalf("list %v", l)
	}
}

func TestPickMessageAttributes(t *testing.T) {
	all := map[string]sqs.MessageAttributeValue{"app.a": {DataType: "String", StringValue: "1"}, "app.b": {DataType: "String", StringValue: "2"}, "other": {DataType: "String", StringValue: "3"}}
	if got := pickMsgAttrs(all, []string{"app.*"}); len(got) != 2 {
		t.Fatalf("prefix: %v", got)
	}
	if got := pickMsgAttrs(all, []string{"All"}); len(got) != 3 {
		t.Fatalf("All: %v", got)
	}
	if got := pickMsgAttrs(all, nil); got != nil {
		t.Fatalf("none asked: %v", got)
	}
}

// The direct JSON renderer writes the document json.Marshal makes of
// jsonValue (the reference), escapes included.
func TestRenderJSONMatchesMarshal(t *testing.T) {
	out := []node{
		str("QueueUrl", "http://h/1/q"),
		str("Empty", ""),
		boolean("Flag", true),
		list("Messages", "Message", []node{obj("",
			str("Body", "quote \" backslash \\ nl \n tab \t ctl \x01 <>& é \u2028 bad \xff end"),
			smap("Attributes", "Attribute", "Name", "Value", map[string]string{"b": "2", "a": "1"}),
			mattrs("MessageAttributes", map[string]sqs.MessageAttributeValue{"s": {DataType: "String", StringValue: "v"}, "b": {DataType: "Binary", BinaryValue: []byte{0, 1, 2}}}),
		)}),
		list("Failed", "BatchResultErrorEntry", nil),
	}
	want, err := json.Marshal(obj("", out...).jsonValue())
	if err != nil {
		t.Fatal(err)
	}
	got := renderJSON(out)
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	_ = json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("rendered\n%s\nwant\n%s", got, want)
	}
}
