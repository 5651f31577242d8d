package esm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Filter is one compiled Lambda event-filtering pattern (the syntax of
// FilterCriteria.Filters[].Pattern): keys AND, the conditions of a leaf
// array OR; a leaf condition is a literal (string, number, boolean, null),
// {"prefix"}, {"suffix"}, {"anything-but"}, {"numeric"}, {"exists"} or
// {"equals-ignore-case"}.
type Filter struct {
	root map[string]any
}

// MaxFilters is how many filters a mapping may have (Lambda's quota).
const MaxFilters = 5

// MaxPatternLength is the longest pattern Lambda accepts.
const MaxPatternLength = 4096

// CompileFilter parses and checks a pattern; the error says what is wrong.
func CompileFilter(pattern string) (*Filter, error) {
	if len(pattern) > MaxPatternLength {
		return nil, fmt.Errorf("the pattern is %d characters long; at most %d are allowed", len(pattern), MaxPatternLength)
	}
	var root map[string]any
	d := json.NewDecoder(strings.NewReader(pattern))
	d.UseNumber()
	if err := d.Decode(&root); err != nil || root == nil {
		return nil, fmt.Errorf("the pattern %q is not a JSON object", pattern)
	}
	if err := checkNode(root, ""); err != nil {
		return nil, err
	}
	return &Filter{root: root}, nil
}

func checkNode(n map[string]any, path string) error {
	if len(n) == 0 {
		return fmt.Errorf("the pattern at %q is an empty object", path)
	}
	for k, v := range n {
		p := strings.TrimPrefix(path+"."+k, ".")
		switch v := v.(type) {
		case map[string]any:
			if err := checkNode(v, p); err != nil {
				return err
			}
		case []any:
			if len(v) == 0 {
				return fmt.Errorf("the pattern at %q is an empty array: list the values to match", p)
			}
			for _, c := range v {
				if err := checkCondition(c, p); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("the pattern at %q must be an object or an array of conditions, not %v", p, v)
		}
	}
	return nil
}

func checkCondition(c any, p string) error {
	m, ok := c.(map[string]any)
	if !ok {
		return nil // a literal
	}
	if len(m) != 1 {
		return fmt.Errorf("the condition at %q must have exactly one operator", p)
	}
	for op, arg := range m {
		switch op {
		case "prefix", "suffix", "equals-ignore-case":
			if _, ok := arg.(string); !ok {
				return fmt.Errorf("%q at %q takes a string", op, p)
			}
		case "exists":
			if _, ok := arg.(bool); !ok {
				return fmt.Errorf("\"exists\" at %q takes true or false", p)
			}
		case "anything-but":
			switch a := arg.(type) {
			case string, json.Number, bool:
			case []any:
				if len(a) == 0 {
					return fmt.Errorf("\"anything-but\" at %q has an empty list", p)
				}
				for _, x := range a {
					switch x.(type) {
					case string, json.Number:
					default:
						return fmt.Errorf("\"anything-but\" at %q lists strings or numbers only", p)
					}
				}
			case map[string]any:
				if len(a) != 1 {
					return fmt.Errorf("\"anything-but\" at %q takes one of prefix or suffix", p)
				}
				for k, v := range a {
					if _, ok := v.(string); !ok || (k != "prefix" && k != "suffix" && k != "equals-ignore-case") {
						return fmt.Errorf("\"anything-but\" at %q takes {\"prefix\": \"...\"}, {\"suffix\": \"...\"} or {\"equals-ignore-case\": \"...\"}", p)
					}
				}
			default:
				return fmt.Errorf("\"anything-but\" at %q takes a value, a list or {\"prefix\": ...}", p)
			}
		case "numeric":
			a, ok := arg.([]any)
			if !ok || len(a) == 0 || len(a)%2 != 0 || len(a) > 4 {
				return fmt.Errorf("\"numeric\" at %q takes one or two (operator, number) pairs, e.g. [\">\", 0, \"<=\", 5]", p)
			}
			for i := 0; i < len(a); i += 2 {
				o, _ := a[i].(string)
				if o != "<" && o != "<=" && o != "=" && o != ">" && o != ">=" {
					return fmt.Errorf("\"numeric\" at %q: %v is not one of <, <=, =, >, >=", p, a[i])
				}
				if _, ok := a[i+1].(json.Number); !ok {
					return fmt.Errorf("\"numeric\" at %q: %v is not a number", p, a[i+1])
				}
			}
		default:
			return fmt.Errorf("unknown operator %q at %q (use prefix, suffix, anything-but, numeric, exists or equals-ignore-case)", op, p)
		}
	}
	return nil
}

// Match reports whether event (a decoded JSON object) matches the filter.
func (f *Filter) Match(event map[string]any) bool { return matchNode(f.root, event) }

func matchNode(p map[string]any, ev map[string]any) bool {
	for k, pv := range p {
		v, present := ev[k]
		switch pv := pv.(type) {
		case map[string]any:
			sub, ok := v.(map[string]any)
			if !ok || !matchNode(pv, sub) {
				return false
			}
		case []any:
			if !matchLeaf(pv, v, present) {
				return false
			}
		}
	}
	return true
}

func matchLeaf(conds []any, v any, present bool) bool {
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok {
			if e, ok := m["exists"]; ok {
				if e.(bool) == present {
					return true
				}
				continue
			}
		}
		if !present {
			continue
		}
		if vs, ok := v.([]any); ok {
			for _, x := range vs {
				if matchCond(c, x) {
					return true
				}
			}
			continue
		}
		if matchCond(c, v) {
			return true
		}
	}
	return false
}

func matchCond(c any, v any) bool {
	switch c := c.(type) {
	case map[string]any:
		for op, arg := range c {
			switch op {
			case "prefix":
				s, ok := v.(string)
				return ok && strings.HasPrefix(s, arg.(string))
			case "suffix":
				s, ok := v.(string)
				return ok && strings.HasSuffix(s, arg.(string))
			case "equals-ignore-case":
				s, ok := v.(string)
				return ok && strings.EqualFold(s, arg.(string))
			case "anything-but":
				return anythingBut(arg, v)
			case "numeric":
				return numeric(arg.([]any), v)
			}
		}
		return false
	default:
		return equal(c, v)
	}
}

func anythingBut(arg any, v any) bool {
	switch a := arg.(type) {
	case []any:
		for _, x := range a {
			if equal(x, v) {
				return false
			}
		}
		return true
	case map[string]any:
		s, ok := v.(string)
		if !ok {
			return false
		}
		for k, x := range a {
			switch k {
			case "prefix":
				return !strings.HasPrefix(s, x.(string))
			case "suffix":
				return !strings.HasSuffix(s, x.(string))
			case "equals-ignore-case":
				return !strings.EqualFold(s, x.(string))
			}
		}
		return false
	default:
		return !equal(a, v)
	}
}

func numeric(ops []any, v any) bool {
	x, ok := number(v)
	if !ok {
		return false
	}
	for i := 0; i < len(ops); i += 2 {
		y, _ := number(ops[i+1])
		var r bool
		switch ops[i].(string) {
		case "<":
			r = x < y
		case "<=":
			r = x <= y
		case "=":
			r = x == y
		case ">":
			r = x > y
		case ">=":
			r = x >= y
		}
		if !r {
			return false
		}
	}
	return true
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil && !math.IsInf(f, 0)
	case float64:
		return n, true
	}
	return 0, false
}

func equal(c, v any) bool {
	if cn, ok := number(c); ok {
		vn, ok := number(v)
		return ok && cn == vn
	}
	switch c := c.(type) {
	case string:
		s, ok := v.(string)
		return ok && s == c
	case bool:
		b, ok := v.(bool)
		return ok && b == c
	case nil:
		return v == nil
	}
	return false
}

// FilterSet is a mapping's filters: a record matches when any does (no
// filters: everything matches).
type FilterSet []*Filter

// CompileFilters compiles a mapping's patterns.
func CompileFilters(patterns []string) (FilterSet, error) {
	if len(patterns) > MaxFilters {
		return nil, fmt.Errorf("%d filters given; at most %d are allowed", len(patterns), MaxFilters)
	}
	out := make(FilterSet, 0, len(patterns))
	for _, p := range patterns {
		f, err := CompileFilter(p)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// Match reports whether the record (Lambda's SQS record) matches: its
// body is matched as JSON when it parses as a JSON object, else as a
// string.
func (fs FilterSet) Match(rec *Record) bool {
	if len(fs) == 0 {
		return true
	}
	ev := recordEvent(rec)
	for _, f := range fs {
		if f.Match(ev) {
			return true
		}
	}
	return false
}

// recordEvent is rec as the filters see it.
func recordEvent(rec *Record) map[string]any {
	b, _ := json.Marshal(rec)
	var ev map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	_ = d.Decode(&ev)
	body := strings.TrimSpace(rec.Body)
	if strings.HasPrefix(body, "{") {
		var obj map[string]any
		d := json.NewDecoder(strings.NewReader(body))
		d.UseNumber()
		if d.Decode(&obj) == nil && obj != nil {
			ev["body"] = obj
		}
	}
	return ev
}
