package sqsapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

// params reads a request's parameters in either protocol.
type params interface {
	str(name string) (string, bool)
	// list reads a list (JSON name; Query: queryName.N).
	list(name, queryName string) []string
	// strMap reads a string map (JSON name; Query: prefix.N.key/value).
	strMap(name string, queryPrefixes []string, key, value string) map[string]string
	// msgAttrs reads message attributes (JSON name; Query prefix.N.Name/Value.*).
	msgAttrs(name, queryPrefix string) (map[string]sqs.MessageAttributeValue, error)
	// entries reads a list of structures (batch entries).
	entries(name, queryPrefix string) []params
}

func getInt(p params, name string) (*int, error) {
	s, ok := p.str(name)
	if !ok || s == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: fmt.Sprintf("Value %s for parameter %s is invalid. Reason: must be an integer.", s, name)}
	}
	return &n, nil
}

// --- Query ---

type queryParams struct {
	form   url.Values
	prefix string
}

func (q queryParams) str(name string) (string, bool) {
	v, ok := q.form[q.prefix+name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (q queryParams) indexes(prefix string) []int {
	seen := map[int]bool{}
	for k := range q.form {
		rest, ok := strings.CutPrefix(k, q.prefix+prefix+".")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(n); err == nil {
			seen[i] = true
		}
	}
	out := make([]int, 0, len(seen))
	for i := range seen {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

func (q queryParams) list(_, queryName string) []string {
	var out []string
	for _, i := range q.indexes(queryName) {
		if v, ok := q.str(fmt.Sprintf("%s.%d", queryName, i)); ok {
			out = append(out, v)
		}
	}
	return out
}

func (q queryParams) strMap(_ string, prefixes []string, key, value string) map[string]string {
	var out map[string]string
	for _, p := range prefixes {
		for _, i := range q.indexes(p) {
			k, _ := q.str(fmt.Sprintf("%s.%d.%s", p, i, key))
			v, _ := q.str(fmt.Sprintf("%s.%d.%s", p, i, value))
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func (q queryParams) msgAttrs(_, prefix string) (map[string]sqs.MessageAttributeValue, error) {
	var out map[string]sqs.MessageAttributeValue
	for _, i := range q.indexes(prefix) {
		base := fmt.Sprintf("%s.%d.", prefix, i)
		name, _ := q.str(base + "Name")
		v := sqs.MessageAttributeValue{}
		v.DataType, _ = q.str(base + "Value.DataType")
		v.StringValue, _ = q.str(base + "Value.StringValue")
		if b, ok := q.str(base + "Value.BinaryValue"); ok {
			d, err := base64.StdEncoding.DecodeString(b)
			if err != nil {
				return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: fmt.Sprintf("The binary value of message attribute '%s' is not valid base64.", name)}
			}
			v.BinaryValue = d
		}
		if out == nil {
			out = map[string]sqs.MessageAttributeValue{}
		}
		out[name] = v
	}
	return out, nil
}

func (q queryParams) entries(_, prefix string) []params {
	var out []params
	for _, i := range q.indexes(prefix) {
		out = append(out, queryParams{form: q.form, prefix: fmt.Sprintf("%s%s.%d.", q.prefix, prefix, i)})
	}
	return out
}

// --- JSON ---

type jsonParams map[string]any

func (j jsonParams) str(name string) (string, bool) {
	v, ok := j[name]
	if !ok || v == nil {
		return "", false
	}
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		return strconv.FormatBool(t), true
	}
	b, _ := json.Marshal(v)
	return string(b), true
}

func (j jsonParams) list(name, _ string) []string {
	arr, _ := j[name].([]any)
	var out []string
	for _, v := range arr {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (j jsonParams) strMap(name string, _ []string, _, _ string) map[string]string {
	m, _ := j[name].(map[string]any)
	if m == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range m {
		switch t := v.(type) {
		case string:
			out[k] = t
		case json.Number:
			out[k] = t.String()
		case bool:
			out[k] = strconv.FormatBool(t)
		default:
			b, _ := json.Marshal(v)
			out[k] = string(b)
		}
	}
	return out
}

func (j jsonParams) msgAttrs(name, _ string) (map[string]sqs.MessageAttributeValue, error) {
	m, _ := j[name].(map[string]any)
	if m == nil {
		return nil, nil
	}
	out := map[string]sqs.MessageAttributeValue{}
	for k, v := range m {
		a, _ := v.(map[string]any)
		mv := sqs.MessageAttributeValue{}
		mv.DataType, _ = a["DataType"].(string)
		mv.StringValue, _ = a["StringValue"].(string)
		if b, ok := a["BinaryValue"].(string); ok {
			d, err := base64.StdEncoding.DecodeString(b)
			if err != nil {
				return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: fmt.Sprintf("The binary value of message attribute '%s' is not valid base64.", k)}
			}
			mv.BinaryValue = d
		}
		out[k] = mv
	}
	return out, nil
}

func (j jsonParams) entries(name, _ string) []params {
	arr, _ := j[name].([]any)
	var out []params
	for _, v := range arr {
		if m, ok := v.(map[string]any); ok {
			out = append(out, jsonParams(m))
		}
	}
	return out
}
