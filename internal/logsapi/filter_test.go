package logsapi

import "testing"

// apache is an Apache common log line (CloudWatch Logs' own example).
const apache = `127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534`

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
		{`{ $.path = "*/index.html" }`, `{"path":"/var/www/index.html"}`, true},
		// Regular expressions.
		{`%ERROR|WARN%`, "2024 WARN low disk", true},
		{`%ERROR|WARN%`, "2024 INFO fine", false},
		{`%^START RequestId: [0-9a-f-]{36}%`, "START RequestId: 8f5c1f9e-2d3b-4c1a-9e7f-0123456789ab Version: $LATEST", true},
		{`%^START%`, "the START", false},
		{`%took \d{4,} ms%`, "request took 12345 ms", true},
		{`%took \d{4,} ms%`, "request took 12 ms", false},
		{`%100\%%`, "cpu at 100% now", true},
		{`timeout %upstream-\d+%`, "timeout talking to upstream-7", true},
		{`timeout %upstream-\d+%`, "timeout talking to upstream-x", false},
		{`ERROR -%retry(ing)?%`, "ERROR retrying", false},
		{`ERROR -%retry(ing)?%`, "ERROR final", true},
		{`?%^WARN% ?%^ERROR%`, "ERROR boom", true},
		{`{ $.level = %^(ERROR|FATAL)$% }`, `{"level":"FATAL"}`, true},
		{`{ $.level = %^(ERROR|FATAL)$% }`, `{"level":"ERRORS"}`, false},
		{`{ $.level != %^ERR% }`, `{"level":"INFO"}`, true},
		{`{ $.code = %^4\d\d$% }`, `{"code":404}`, true},
		{`{ $.n = "1000" }`, `{"n":1e3}`, true},
		{`{ $.level = "ERROR" && $.ms > 5 }`, `{"level":"ERROR","ms":6}`, true},
		{`{ $.level = "ERROR" && $.ms > 5 }`, `{"level":"INFO","ms":6}`, false},
		{`{ $.level = "ERR*" || $.level = "WARN" }`, `{"level":"WARN"}`, true},
		// Space-delimited.
		{`[ip, user, username, timestamp, request, status_code, bytes]`, apache, true},
		{`[ip, user, username, timestamp, request, status_code, bytes]`, apache + " extra", false},
		{`[ip, user, username, timestamp, request, status_code]`, apache, false},
		{`[ip, user, username, timestamp, request = *gif*, status_code = 2*, bytes > 1000]`, apache, true},
		{`[ip, user, username, timestamp, request = *html*, status_code = 2*, bytes > 1000]`, apache, false},
		{`[ip, user, username = "frank", ...]`, apache, true},
		{`[ip = 127.0.0.1, ...]`, apache, true},
		{`[ip = 10.*, ...]`, apache, false},
		{`[ip, user = -, ...]`, apache, true},
		{`[..., status_code = 200, bytes]`, apache, true},
		{`[..., status_code != 200, bytes]`, apache, false},
		{`[..., status_code >= 400 && status_code < 500, bytes]`, apache, false},
		{`[..., status_code = 404 || status_code = 200, bytes]`, apache, true},
		{`[..., (status_code = 404 || status_code = 200) && status_code != 500, bytes]`, apache, true},
		{`[ip, ..., timestamp = "10/Oct/2000:13:25:15 -0700", ...]`, apache, true},
		{`[ip, ..., timestamp = *2001*, ...]`, apache, false},
		{`[..., request = %^GET /apache%, ...]`, apache, true},
		{`[..., request = %^POST%, ...]`, apache, false},
		{`[a, b, c]`, "x y z", true},
		{`[a, b, c]`, "  x   y   z  ", true},
		{`[a, b = y, c]`, "x yy z", false},
		{`[...]`, "", true},
		{`[a, ...]`, "", false},
		{`[level = INFO || level = WARN, msg]`, `WARN "disk nearly full"`, true},
		{`[level = INFO || level = WARN, msg]`, `ERROR "disk nearly full"`, false},
		{`[n > 1.5, ...]`, "2 apples", true},
		{`[n > 1.5, ...]`, "apples 2", false},
		{`[n = 2, ...]`, "2.0 apples", true},
	}
	for _, c := range cases {
		p, err := Compile(c.pat)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.pat, err)
		}
		if got := p.Match(c.msg); got != c.want {
			t.Errorf("%q on %q = %v, want %v", c.pat, c.msg, got, c.want)
		}
		if got := p.MatchBytes([]byte(c.msg)); got != c.want {
			t.Errorf("%q on %q as bytes = %v, want %v", c.pat, c.msg, got, c.want)
		}
	}
}

func TestFilterPatternErrors(t *testing.T) {
	for _, bad := range []string{`{ $.a = "x" `, `{ level = 1 }`, `{ $.a ~ 1 }`, `{ $.a > abc }`, `"open`, `{ ($.a = 1 }`,
		`[ip, user`, `[]`, `[ip, , user]`, `[ip, ip]`, `[ip, user > abc]`, `[ip, user = ]`, `[ip, user = "x]`, `[ip, status = 200 && other = 1]`, `[ip ~ 1]`, `[..., status_code = (404 || status_code = 200), bytes]`,
		`%unterminated`, `%%`, `%a(%`, `%a% %b% %c%`, `{ $.a = %x% || $.b = %y% || $.c = %z% }`, `{ $.a > %x% }`, `[a = %x%, b = %y%, c = %z%]`} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("Compile(%q) = nil error", bad)
		}
	}
}
