package logsapi

import "testing"

func TestFilterPatterns(t *testing.T) {
	cases := []struct {
		pat  string
		msg  string
		want bool
	}{
		{"", "anything", true},
		{"ERROR", "2024 ERROR boom", true},
		{"ERROR", "2024 error boom", false}, // case-sensitive
		{"ERROR boom", "ERROR boom", true},
		{"ERROR boom", "ERROR bang", false},
		{`"disk full"`, "the disk full again", true},
		{`"disk full"`, "full disk", false},
		{"ERROR -retry", "ERROR then retry", false},
		{"ERROR -retry", "ERROR final", true},
		{"?ERROR ?WARN", "WARN low", true},
		{"?ERROR ?WARN", "INFO fine", false},
		{"START -DEBUG ?a ?b", "START b", true},
		{`{ $.level = "ERROR" }`, `{"level":"ERROR","message":"x"}`, true},
		{`{ $.level = "ERROR" }`, `{"level":"INFO"}`, false},
		{`{ $.level = "ERROR" }`, `level = ERROR`, false},
		{`{ $.level != "ERROR" }`, `{"level":"INFO"}`, true},
		{`{ $.ms > 100 }`, `{"ms":150}`, true},
		{`{ $.ms > 100 }`, `{"ms":50}`, false},
		{`{ $.ms <= 50 && $.level = "INFO" }`, `{"ms":50,"level":"INFO"}`, true},
		{`{ $.ms < 10 || $.level = ERR* }`, `{"ms":50,"level":"ERROR"}`, true},
		{`{ ($.a = 1 || $.b = 2) && $.c = "x" }`, `{"b":2,"c":"x"}`, true},
		{`{ ($.a = 1 || $.b = 2) && $.c = "x" }`, `{"b":2,"c":"y"}`, false},
		{`{ $.record.requestId = "r1" }`, `{"type":"platform.start","record":{"requestId":"r1"}}`, true},
		{`{ $.list[1] = "b" }`, `{"list":["a","b"]}`, true},
		{`{ $.missing NOT EXISTS }`, `{"a":1}`, true},
		{`{ $.flag IS TRUE }`, `{"flag":true}`, true},
		{`{ $.flag IS FALSE }`, `{"flag":true}`, false},
		{`{ $.v IS NULL }`, `{"v":null}`, true},
	}
	for _, c := range cases {
		p, err := Compile(c.pat)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.pat, err)
		}
		if got := p.Match(c.msg); got != c.want {
			t.Errorf("%q on %q = %v, want %v", c.pat, c.msg, got, c.want)
		}
	}
}

func TestFilterPatternErrors(t *testing.T) {
	for _, bad := range []string{`{ $.a = "x" `, `{ level = 1 }`, `{ $.a ~ 1 }`, `{ $.a > abc }`, `"open`, `[ip, user]`, `{ ($.a = 1 }`} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("Compile(%q) = nil error", bad)
		}
	}
}
