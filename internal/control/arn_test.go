package control

import "testing"

func TestParseRef(t *testing.T) {
	cases := []struct {
		in   string
		want Ref
		bad  bool
	}{
		{in: "hello", want: Ref{Name: "hello"}},
		{in: "hello:live", want: Ref{Name: "hello", Qualifier: "live"}},
		{in: "hello:$LATEST", want: Ref{Name: "hello", Qualifier: "$LATEST"}},
		{in: "123456789012:function:hello", want: Ref{AccountID: "123456789012", Name: "hello"}},
		{in: "123456789012:function:hello:7", want: Ref{AccountID: "123456789012", Name: "hello", Qualifier: "7"}},
		{in: "arn:aws:lambda:us-east-1:123456789012:function:hello", want: Ref{AccountID: "123456789012", Name: "hello"}},
		{in: "arn:aws:lambda:eu-west-1:123456789012:function:my_fn-2:prod", want: Ref{AccountID: "123456789012", Name: "my_fn-2", Qualifier: "prod"}},
		{in: "", bad: true},
		{in: "bad name", bad: true},
		{in: "a:b:c:d:e", bad: true},
		{in: "12345:function:hello", bad: true},
		{in: "arn:aws:lambda:us-east-1:123456789012:function:hello:1:2", bad: true},
		{in: "hello:bad qualifier", bad: true},
		{in: string(make([]byte, 65)), bad: true},
	}
	for _, c := range cases {
		got, err := ParseRef(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseRef(%q) = %+v, want an error", c.in, got)
			} else if e, ok := err.(*Error); !ok || e.Code != "ValidationException" || e.Status != 400 {
				t.Errorf("ParseRef(%q) error %v, want a ValidationException", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestARNs(t *testing.T) {
	if got := FunctionARN("us-east-1", "123456789012", "f"); got != "arn:aws:lambda:us-east-1:123456789012:function:f" {
		t.Errorf("FunctionARN = %s", got)
	}
	if got := QualifiedARN("us-east-1", "123456789012", "f", "live"); got != "arn:aws:lambda:us-east-1:123456789012:function:f:live" {
		t.Errorf("QualifiedARN = %s", got)
	}
	if got := QualifiedARN("us-east-1", "123456789012", "f", ""); got != FunctionARN("us-east-1", "123456789012", "f") {
		t.Errorf("QualifiedARN without qualifier = %s", got)
	}
}

func TestRefInAccount(t *testing.T) {
	if err := refInAccount(Ref{AccountID: "111111111111", Name: "f"}, "222222222222", "us-east-1"); err == nil || err.(*Error).Code != "ResourceNotFoundException" {
		t.Errorf("another account's ARN: %v", err)
	}
	if err := refInAccount(Ref{Name: "f"}, "222222222222", "us-east-1"); err != nil {
		t.Errorf("bare name: %v", err)
	}
}
