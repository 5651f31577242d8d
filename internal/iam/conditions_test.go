package iam

import (
	"fmt"
	"testing"
)

// TestConditionOperators: each operator family on one condition, with a
// matching value, a non-matching one, and the key absent; the IfExists
// suffix and the ForAnyValue:/ForAllValues: qualifiers over them.
func TestConditionOperators(t *testing.T) {
	type ctx = map[string][]string
	cases := []struct {
		cond string // the Condition block
		ctx  ctx
		want bool
	}{
		// Numeric.
		{`{"NumericEquals":{"k:n":"10"}}`, ctx{"k:n": {"10"}}, true},
		{`{"NumericEquals":{"k:n":10}}`, ctx{"k:n": {"10.0"}}, true},
		{`{"NumericEquals":{"k:n":"10"}}`, ctx{"k:n": {"11"}}, false},
		{`{"NumericEquals":{"k:n":"10"}}`, ctx{"k:n": {"ten"}}, false},
		{`{"NumericEquals":{"k:n":"10"}}`, ctx{}, false},
		{`{"NumericNotEquals":{"k:n":["1","2"]}}`, ctx{"k:n": {"3"}}, true},
		{`{"NumericNotEquals":{"k:n":["1","2"]}}`, ctx{"k:n": {"2"}}, false},
		{`{"NumericNotEquals":{"k:n":"1"}}`, ctx{}, true},
		{`{"NumericLessThan":{"k:n":"10"}}`, ctx{"k:n": {"9.5"}}, true},
		{`{"NumericLessThan":{"k:n":"10"}}`, ctx{"k:n": {"10"}}, false},
		{`{"NumericLessThanEquals":{"k:n":"10"}}`, ctx{"k:n": {"10"}}, true},
		{`{"NumericGreaterThan":{"k:n":"-1"}}`, ctx{"k:n": {"0"}}, true},
		{`{"NumericGreaterThan":{"k:n":"5"}}`, ctx{"k:n": {"5"}}, false},
		{`{"NumericGreaterThanEquals":{"k:n":"5"}}`, ctx{"k:n": {"5"}}, true},
		{`{"NumericLessThanIfExists":{"k:n":"5"}}`, ctx{}, true},
		{`{"NumericLessThanIfExists":{"k:n":"5"}}`, ctx{"k:n": {"6"}}, false},
		// Date: ISO 8601 forms and epoch seconds.
		{`{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-12-03T16:00:00Z"}}, true},
		{`{"DateLessThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-12-03T16:00:00Z"}}, false},
		{`{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01"}}`, ctx{"aws:CurrentTime": {"2026-12-03T16:00:00.123Z"}}, true},
		{`{"DateGreaterThanEquals":{"aws:EpochTime":"1700000000"}}`, ctx{"aws:EpochTime": {"1700000000"}}, true},
		{`{"DateLessThanEquals":{"aws:EpochTime":"2023-11-14T22:13:20Z"}}`, ctx{"aws:EpochTime": {"1700000000"}}, true},
		{`{"DateLessThan":{"aws:EpochTime":"2023-11-14T22:13:20Z"}}`, ctx{"aws:EpochTime": {"1700000000"}}, false},
		{`{"DateEquals":{"k:d":"2024-05-01T12:00:00+02:00"}}`, ctx{"k:d": {"2024-05-01T10:00:00Z"}}, true},
		{`{"DateNotEquals":{"k:d":"2024-05-01T12:00:00Z"}}`, ctx{"k:d": {"2024-05-01T10:00:00Z"}}, true},
		{`{"DateNotEquals":{"k:d":"2024-05-01T12:00:00Z"}}`, ctx{"k:d": {"2024-05-01T12:00:00Z"}}, false},
		{`{"DateLessThan":{"k:d":"2024-05-01"}}`, ctx{"k:d": {"not a date"}}, false},
		{`{"DateLessThan":{"k:d":"2024-05-01"}}`, ctx{}, false},
		{`{"DateLessThanIfExists":{"k:d":"2024-05-01"}}`, ctx{}, true},
		// IP addresses, v4 and v6, CIDR or single.
		{`{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.7"]}}`, ctx{"aws:SourceIp": {"10.20.30.40"}}, true},
		{`{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.7"]}}`, ctx{"aws:SourceIp": {"192.0.2.7"}}, true},
		{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx{"aws:SourceIp": {"11.0.0.1"}}, false},
		{`{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx{"aws:SourceIp": {"2001:db8::1"}}, true},
		{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx{}, false},
		{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx{"aws:SourceIp": {"11.0.0.1"}}, true},
		{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx{"aws:SourceIp": {"10.0.0.1"}}, false},
		{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx{}, true},
		// Null.
		{`{"Null":{"k:x":"true"}}`, ctx{}, true},
		{`{"Null":{"k:x":"true"}}`, ctx{"k:x": {"v"}}, false},
		{`{"Null":{"k:x":"false"}}`, ctx{"k:x": {"v"}}, true},
		{`{"Null":{"k:x":false}}`, ctx{}, false},
		// Binary (base64 on both sides).
		{`{"BinaryEquals":{"k:b":"QmluYXJ5"}}`, ctx{"k:b": {"QmluYXJ5"}}, true},
		{`{"BinaryEquals":{"k:b":"QmluYXJ5"}}`, ctx{"k:b": {"QmluYXJ6"}}, false},
		{`{"BinaryEquals":{"k:b":"QmluYXJ5"}}`, ctx{"k:b": {"not base64!"}}, false},
		{`{"BinaryEquals":{"k:b":"QmluYXJ5"}}`, ctx{}, false},
		{`{"BinaryEqualsIfExists":{"k:b":"QmluYXJ5"}}`, ctx{}, true},
		// Bool.
		{`{"Bool":{"aws:SecureTransport":"true"}}`, ctx{"aws:SecureTransport": {"TRUE"}}, true},
		{`{"Bool":{"aws:SecureTransport":true}}`, ctx{"aws:SecureTransport": {"false"}}, false},
		{`{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}`, ctx{}, true},
		// String IfExists over negated and positive operators.
		{`{"StringNotEqualsIfExists":{"k:s":"a"}}`, ctx{"k:s": {"a"}}, false},
		{`{"StringNotEqualsIfExists":{"k:s":"a"}}`, ctx{}, true},
		{`{"StringLikeIfExists":{"k:s":"a*"}}`, ctx{"k:s": {"abc"}}, true},
		{`{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:s3:::b*"}}`, ctx{"aws:SourceArn": {"arn:aws:s3:::c"}}, false},
		// Set qualifiers over non-string operators.
		{`{"ForAllValues:NumericLessThan":{"k:n":"10"}}`, ctx{"k:n": {"1", "9"}}, true},
		{`{"ForAllValues:NumericLessThan":{"k:n":"10"}}`, ctx{"k:n": {"1", "10"}}, false},
		{`{"ForAllValues:NumericLessThan":{"k:n":"10"}}`, ctx{}, true},
		{`{"ForAnyValue:NumericGreaterThan":{"k:n":"10"}}`, ctx{"k:n": {"1", "11"}}, true},
		{`{"ForAnyValue:NumericGreaterThan":{"k:n":"10"}}`, ctx{"k:n": {"1", "2"}}, false},
		{`{"ForAnyValue:IpAddress":{"k:ips":"10.0.0.0/8"}}`, ctx{"k:ips": {"11.0.0.1", "10.0.0.1"}}, true},
		{`{"ForAllValues:IpAddress":{"k:ips":"10.0.0.0/8"}}`, ctx{"k:ips": {"11.0.0.1", "10.0.0.1"}}, false},
		{`{"ForAnyValue:DateLessThan":{"k:ds":"2024-01-01"}}`, ctx{"k:ds": {"2025-01-01", "2023-06-01"}}, true},
		{`{"ForAllValues:StringLike":{"aws:TagKeys":["team","cost-*"]}}`, ctx{"aws:TagKeys": {"team", "cost-center"}}, true},
		{`{"ForAllValues:StringLike":{"aws:TagKeys":["team","cost-*"]}}`, ctx{"aws:TagKeys": {"team", "owner"}}, false},
		{`{"ForAnyValue:StringEqualsIfExists":{"k:s":"a"}}`, ctx{"k:s": {"b", "a"}}, true},
		{`{"ForAllValues:StringNotEquals":{"k:s":["a","b"]}}`, ctx{"k:s": {"c", "d"}}, true},
		{`{"ForAllValues:StringNotEquals":{"k:s":["a","b"]}}`, ctx{"k:s": {"c", "a"}}, false},
		// Several conditions all hold (AND), several values of one any (OR).
		{`{"NumericLessThan":{"k:n":"10"},"StringEquals":{"k:s":["x","y"]}}`, ctx{"k:n": {"1"}, "k:s": {"y"}}, true},
		{`{"NumericLessThan":{"k:n":"10"},"StringEquals":{"k:s":["x","y"]}}`, ctx{"k:n": {"11"}, "k:s": {"y"}}, false},
	}
	for i, c := range cases {
		doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"*","Condition":%s}}`, c.cond)
		p, err := ParsePolicy(doc, IdentityPolicy)
		if err != nil {
			t.Fatalf("%d %s: %v", i, c.cond, err)
		}
		got := Evaluate(Request{Action: "a:b", Resource: "*", Context: c.ctx}, p) == Allowed
		if got != c.want {
			t.Errorf("%d %s with %v: %v, want %v", i, c.cond, c.ctx, got, c.want)
		}
	}
}

func TestConditionOperatorErrors(t *testing.T) {
	for _, cond := range []string{
		`{"NumericSortOf":{"k:n":"1"}}`,
		`{"ForSomeValues:StringEquals":{"k:s":"a"}}`,
		`{"NullIfExists":{"k:s":"true"}}`,
		`{"StringEquals":{"k:s":[]}}`,
	} {
		doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"*","Condition":%s}}`, cond)
		if _, err := ParsePolicy(doc, IdentityPolicy); err == nil {
			t.Errorf("%s parsed", cond)
		}
	}
}
