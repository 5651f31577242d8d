package vpc

import "testing"

func i32(v int32) *int32 { return &v }

func TestNormalizeProtocol(t *testing.T) {
	for in, want := range map[string]string{"tcp": "tcp", "6": "tcp", "UDP": "udp", "17": "udp", "icmp": "icmp", "1": "icmp", "-1": "-1", "all": "-1", "50": "50"} {
		got, err := NormalizeProtocol(in)
		if err != nil || got != want {
			t.Errorf("%q → %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"foo", "256", "-2"} {
		if _, err := NormalizeProtocol(bad); !IsCode(err, CodeInvalidParameterValue) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestPorts(t *testing.T) {
	cases := []struct {
		proto    string
		from, to *int32
		wf, wt   int32
		bad      bool
	}{
		{"tcp", i32(6379), i32(6379), 6379, 6379, false},
		{"tcp", nil, nil, 0, 65535, false},
		{"tcp", i32(-1), i32(-1), 0, 65535, false},
		{"tcp", i32(10), i32(5), 0, 0, true},
		{"udp", i32(0), i32(70000), 0, 0, true},
		{"tcp", i32(1), nil, 0, 0, true},
		{"icmp", i32(8), i32(0), 8, 0, false},
		{"icmp", nil, nil, -1, -1, false},
		{"icmp", i32(-1), i32(3), 0, 0, true},
		{"-1", i32(22), i32(22), -1, -1, false},
	}
	for _, c := range cases {
		f, to, err := normalizePorts(c.proto, c.from, c.to)
		if c.bad {
			if !IsCode(err, CodeInvalidParameterValue) {
				t.Errorf("%+v: want error, got %d-%d %v", c, f, to, err)
			}
			continue
		}
		if err != nil || f != c.wf || to != c.wt {
			t.Errorf("%+v: got %d-%d %v", c, f, to, err)
		}
	}
}

func TestRuleAddRemove(t *testing.T) {
	resolve := func(g GroupSource) (string, string, error) { return g.GroupID, "111111111111", nil }
	rules, err := expand([]Permission{{Protocol: "tcp", FromPort: i32(6379), ToPort: i32(6379),
		CIDRs: []CIDRSource{{CIDR: "10.0.0.0/24"}}, Groups: []GroupSource{{GroupID: "sg-app"}}}}, resolve)
	if err != nil || len(rules) != 2 {
		t.Fatalf("expand: %v %v", rules, err)
	}
	list, added, err := addRules(nil, rules)
	if err != nil || len(list) != 2 || len(added) != 2 || added[0].ID == "" {
		t.Fatalf("add: %v %v", list, err)
	}
	// Same rule again (different description) is a duplicate.
	dup := rules[0]
	dup.Description = "other"
	if _, _, err := addRules(list, []Rule{dup}); !IsCode(err, CodeInvalidPermDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	// A duplicate within one request too.
	if _, _, err := addRules(nil, []Rule{rules[0], rules[0]}); !IsCode(err, CodeInvalidPermDuplicate) {
		t.Fatalf("duplicate in request: %v", err)
	}
	// Different port is not a duplicate.
	other := rules[0]
	other.FromPort, other.ToPort = 5432, 5432
	if _, _, err := addRules(list, []Rule{other}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := removeRules(list, []Rule{other}); !IsCode(err, CodeInvalidPermNotFound) {
		t.Fatalf("remove missing: %v", err)
	}
	left, removed, err := removeRules(list, []Rule{rules[1]})
	if err != nil || len(left) != 1 || len(removed) != 1 || left[0].CIDR != "10.0.0.0/24" {
		t.Fatalf("remove: %v %v %v", left, removed, err)
	}
	if _, err := expand([]Permission{{Protocol: "tcp", FromPort: i32(1), ToPort: i32(2)}}, resolve); !IsCode(err, CodeMissingParameter) {
		t.Fatalf("no source: %v", err)
	}
	if _, err := expand([]Permission{{Protocol: "tcp", CIDRs: []CIDRSource{{CIDR: "banana"}}}}, resolve); !IsCode(err, CodeInvalidParameterValue) {
		t.Fatalf("bad cidr: %v", err)
	}
}
