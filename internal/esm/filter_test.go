package esm

import "testing"

func TestFilters(t *testing.T) {
	rec := func(body string) *Record {
		r := record(Message{MessageID: "m1", Body: body, Attributes: map[string]string{"ApproximateReceiveCount": "1"},
			MessageAttributes: map[string]MessageAttribute{"kind": {DataType: "String", StringValue: ptr("Order")}}}, "arn:aws:sqs:us-east-1:1:q", "us-east-1")
		return &r
	}
	cases := []struct {
		pattern, body string
		want          bool
	}{
		{`{"body":{"a":["x"]}}`, `{"a":"x"}`, true},
		{`{"body":{"a":["x"]}}`, `{"a":"y"}`, false},
		{`{"body":{"a":["x"]}}`, `not json`, false},
		{`{"body":["plain"]}`, `plain`, true},
		{`{"body":[{"prefix":"pl"}]}`, `plain`, true},
		{`{"body":{"n":[{"numeric":[">",0,"<=",5]}]}}`, `{"n":5}`, true},
		{`{"body":{"n":[{"numeric":[">",0,"<=",5]}]}}`, `{"n":6}`, false},
		{`{"body":{"n":[{"numeric":["=",3]}]}}`, `{"n":"3"}`, false},
		{`{"body":{"s":[{"suffix":".png"}]}}`, `{"s":"a.png"}`, true},
		{`{"body":{"s":[{"anything-but":["a","b"]}]}}`, `{"s":"c"}`, true},
		{`{"body":{"s":[{"anything-but":["a","b"]}]}}`, `{"s":"a"}`, false},
		{`{"body":{"s":[{"anything-but":{"prefix":"x"}}]}}`, `{"s":"xy"}`, false},
		{`{"body":{"s":[{"anything-but":"a"}]}}`, `{"s":"b"}`, true},
		{`{"body":{"s":[{"exists":true}]}}`, `{"s":1}`, true},
		{`{"body":{"s":[{"exists":false}]}}`, `{"t":1}`, true},
		{`{"body":{"s":[{"exists":false}]}}`, `{"s":1}`, false},
		{`{"body":{"s":[{"equals-ignore-case":"HeLLo"}]}}`, `{"s":"hello"}`, true},
		{`{"body":{"tags":["b"]}}`, `{"tags":["a","b"]}`, true},
		{`{"body":{"o":{"p":[true]}}}`, `{"o":{"p":true}}`, true},
		{`{"body":{"o":{"p":[null]}}}`, `{"o":{"p":null}}`, true},
		{`{"messageAttributes":{"kind":{"stringValue":["Order"]}}}`, `x`, true},
		{`{"attributes":{"ApproximateReceiveCount":["2"]}}`, `x`, false},
		{`{"body":{"a":["x"]},"eventSource":["aws:sqs"]}`, `{"a":"x"}`, true},
	}
	for _, c := range cases {
		fs, err := CompileFilters([]string{c.pattern})
		if err != nil {
			t.Fatalf("%s: %v", c.pattern, err)
		}
		if got := fs.Match(rec(c.body)); got != c.want {
			t.Errorf("pattern %s on body %s: got %v, want %v", c.pattern, c.body, got, c.want)
		}
	}
	// OR across filters.
	fs, _ := CompileFilters([]string{`{"body":{"a":["x"]}}`, `{"body":{"a":["y"]}}`})
	if !fs.Match(rec(`{"a":"y"}`)) || fs.Match(rec(`{"a":"z"}`)) {
		t.Error("filters are not ORed")
	}
	for _, bad := range []string{`[]`, `{"body":"x"}`, `{"body":[]}`, `{"body":[{"prefix":1}]}`, `{"body":[{"numeric":[">"]}]}`, `{"body":[{"nope":1}]}`, `{}`, `not json`} {
		if _, err := CompileFilter(bad); err == nil {
			t.Errorf("pattern %s accepted", bad)
		}
	}
	if _, err := CompileFilters([]string{`{"a":[1]}`, `{"a":[1]}`, `{"a":[1]}`, `{"a":[1]}`, `{"a":[1]}`, `{"a":[1]}`}); err == nil {
		t.Error("six filters accepted")
	}
}

func ptr[T any](v T) *T { return &v }

func TestBatchItemFailures(t *testing.T) {
	recs := []Record{{MessageID: "a"}, {MessageID: "b"}}
	for _, c := range []struct {
		out    string
		ok     bool
		failed int
	}{
		{``, true, 0}, {`null`, true, 0}, {`{}`, true, 0}, {`{"batchItemFailures":[]}`, true, 0},
		{`{"batchItemFailures":[{"itemIdentifier":"a"}]}`, true, 1},
		{`{"batchItemFailures":[{"itemIdentifier":""}]}`, false, 0},
		{`{"batchItemFailures":[{"itemIdentifier":"zz"}]}`, false, 0},
		{`{"batchItemFailures":[{"id":"a"}]}`, false, 0},
		{`{"batchItemFailures":"a"}`, false, 0},
		{`{bad`, false, 0},
	} {
		f, ok := batchItemFailures([]byte(c.out), recs)
		if ok != c.ok || len(f) != c.failed {
			t.Errorf("%s: got %v %v, want ok=%v failed=%d", c.out, f, ok, c.ok, c.failed)
		}
	}
}
