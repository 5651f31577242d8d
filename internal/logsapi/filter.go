package logsapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Pattern is a compiled CloudWatch Logs filter pattern.
//
//   - "" matches every event.
//   - Terms: every plain term (a word or a "quoted phrase") must occur in
//     the message, no -term may, and if there are ?terms at least one of
//     them must. Matching is case-sensitive, on substrings, as on
//     CloudWatch Logs.
//   - JSON patterns, for messages that are JSON objects:
//     { $.level = "ERROR" && ($.latency > 100 || $.user.name = "a*") },
//     with = != < > <= >=, IS TRUE/FALSE/NULL, NOT EXISTS, selectors with
//     .field and [index], * wildcards in string values and %regex% values.
//   - Space-delimited patterns ([ip, user, ..., status = 4*, bytes > 100])
//     and %regular expressions% (filter_space.go).
type Pattern struct {
	all, none, any       []string      // plain, excluded and OR terms
	allRe, noneRe, anyRe []*rx         // the same as %regex% terms
	json                 node          // nil unless a JSON pattern
	jsonNeed             [][]byte      // literals a line matching json contains
	space                *spacePattern // nil unless a space-delimited pattern
	empty                bool
}

// PatternError is a filter pattern that does not parse.
type PatternError struct{ Msg string }

func (e *PatternError) Error() string { return e.Msg }

func patternErr(format string, a ...any) error { return &PatternError{Msg: fmt.Sprintf(format, a...)} }

// Compile parses a filter pattern.
func Compile(src string) (*Pattern, error) {
	s := strings.TrimSpace(src)
	if s == "" || s == `""` {
		return &Pattern{empty: true}, nil
	}
	if strings.HasPrefix(s, "{") {
		if !strings.HasSuffix(s, "}") {
			return nil, patternErr("Invalid filter pattern %q: a JSON pattern must end with }", src)
		}
		p := &jparser{src: src, cursor: cursor{strings.TrimSpace(s[1 : len(s)-1])}, regexes: new(int)}
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		p.skip()
		if p.s != "" {
			return nil, patternErr("Invalid filter pattern %q: unexpected %q", src, p.s)
		}
		return &Pattern{json: n, jsonNeed: jsonLiterals(n, nil)}, nil
	}
	if strings.HasPrefix(s, "[") {
		sp, err := compileSpace(src, s, new(int))
		if err != nil {
			return nil, err
		}
		return &Pattern{space: sp}, nil
	}
	p := &Pattern{}
	regexes := 0
	for s != "" {
		kind := byte(0)
		if s[0] == '-' || s[0] == '?' {
			kind, s = s[0], s[1:]
		}
		var term string
		if strings.HasPrefix(s, "%") {
			if regexes++; regexes > maxRegexes {
				return nil, patternErr("Invalid filter pattern %q: at most %d regular expressions per filter pattern", src, maxRegexes)
			}
			re, rest, err := cutRegex(src, s)
			if err != nil {
				return nil, err
			}
			s = strings.TrimLeftFunc(rest, unicode.IsSpace)
			switch kind {
			case '-':
				p.noneRe = append(p.noneRe, re)
			case '?':
				p.anyRe = append(p.anyRe, re)
			default:
				p.allRe = append(p.allRe, re)
			}
			continue
		}
		if strings.HasPrefix(s, `"`) {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, patternErr("Invalid filter pattern %q: unterminated quoted phrase", src)
			}
			term, s = s[1:1+end], s[2+end:]
		} else {
			end := strings.IndexFunc(s, unicode.IsSpace)
			if end < 0 {
				end = len(s)
			}
			term, s = s[:end], s[end:]
		}
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		if term == "" {
			if kind != 0 {
				return nil, patternErr("Invalid filter pattern %q: %c must be followed by a term", src, kind)
			}
			continue
		}
		switch kind {
		case '-':
			p.none = append(p.none, term)
		case '?':
			p.any = append(p.any, term)
		default:
			p.all = append(p.all, term)
		}
	}
	if len(p.all)+len(p.any)+len(p.none)+len(p.allRe)+len(p.anyRe)+len(p.noneRe) == 0 {
		p.empty = true
	}
	return p, nil
}

// Match reports whether a log event's message matches.
func (p *Pattern) Match(msg string) bool {
	if p.empty {
		return true
	}
	if p.json != nil {
		var v any
		m := strings.TrimSpace(msg)
		if !strings.HasPrefix(m, "{") || json.Unmarshal([]byte(m), &v) != nil {
			return false
		}
		return p.json.eval(v)
	}
	if p.space != nil {
		return p.space.match(msg)
	}
	return p.MatchBytes([]byte(msg))
}

// MatchBytes is Match on a line as bytes (no copy unless a JSON pattern
// must parse it).
func (p *Pattern) MatchBytes(msg []byte) bool {
	if p.empty {
		return true
	}
	if p.json != nil {
		m := bytes.TrimSpace(msg)
		if len(m) == 0 || m[0] != '{' {
			return false
		}
		for _, l := range p.jsonNeed {
			if !bytes.Contains(m, l) {
				return false
			}
		}
		var v any
		if json.Unmarshal(m, &v) != nil {
			return false
		}
		return p.json.eval(v)
	}
	if p.space != nil {
		return p.space.matchBytes(msg)
	}
	for _, t := range p.all {
		if !bytes.Contains(msg, []byte(t)) {
			return false
		}
	}
	for _, re := range p.allRe {
		if !re.match(msg) {
			return false
		}
	}
	for _, t := range p.none {
		if bytes.Contains(msg, []byte(t)) {
			return false
		}
	}
	for _, re := range p.noneRe {
		if re.match(msg) {
			return false
		}
	}
	if len(p.any)+len(p.anyRe) == 0 {
		return true
	}
	for _, t := range p.any {
		if bytes.Contains(msg, []byte(t)) {
			return true
		}
	}
	for _, re := range p.anyRe {
		if re.match(msg) {
			return true
		}
	}
	return false
}

// JSON patterns.

type node interface{ eval(doc any) bool }

type andNode struct{ l, r node }
type orNode struct{ l, r node }

func (n andNode) eval(d any) bool { return n.l.eval(d) && n.r.eval(d) }
func (n orNode) eval(d any) bool  { return n.l.eval(d) || n.r.eval(d) }

type step struct {
	field string
	index int // -1: a field step
}

type cmpNode struct {
	sel   []step
	op    string // = != < > <= >= istrue isfalse isnull notexists exists
	str   string
	num   float64
	isNum bool
	re    *rx // a %regex% value
}

func (n cmpNode) eval(d any) bool {
	v, ok := lookup(d, n.sel)
	switch n.op {
	case "notexists":
		return !ok
	case "exists":
		return ok
	case "isnull":
		return ok && v == nil
	case "istrue":
		b, isB := v.(bool)
		return ok && isB && b
	case "isfalse":
		b, isB := v.(bool)
		return ok && isB && !b
	}
	if !ok {
		return false
	}
	if n.isNum {
		f, isF := v.(float64)
		if !isF {
			if s, isS := v.(string); isS {
				var err error
				if f, err = strconv.ParseFloat(s, 64); err != nil {
					return n.op == "!="
				}
			} else {
				return n.op == "!="
			}
		}
		switch n.op {
		case "=":
			return f == n.num
		case "!=":
			return f != n.num
		case "<":
			return f < n.num
		case ">":
			return f > n.num
		case "<=":
			return f <= n.num
		case ">=":
			return f >= n.num
		}
		return false
	}
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case float64:
		s = strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(t)
	default:
		return n.op == "!="
	}
	eq := s == n.str
	switch {
	case n.re != nil:
		eq = n.re.matchString(s)
	case strings.Contains(n.str, "*"):
		eq = globMatch(n.str, s)
	}
	if n.op == "=" {
		return eq
	}
	return !eq
}

// jsonLiterals collects the literals a line must contain for n to hold:
// the string values of the = comparisons every match needs (those joined
// by && from the top), when they hold only characters no JSON encoder
// escapes, and of wildcard values their longest literal piece.
func jsonLiterals(n node, out [][]byte) [][]byte {
	switch t := n.(type) {
	case andNode:
		return jsonLiterals(t.r, jsonLiterals(t.l, out))
	case cmpNode:
		if t.op != "=" || t.isNum {
			return out
		}
		if t.re != nil {
			if t.re.lit != nil && plainLiteral(string(t.re.lit)) {
				out = append(out, t.re.lit)
			}
			return out
		}
		if l := longestPiece(t.str); l != "" && plainLiteral(l) {
			out = append(out, []byte(l))
		}
	}
	return out
}

// plainLiteral: letters, digits, space and _ . - : only, with a letter
// that cannot belong to a number's exponent (a number the line writes as
// 1e3 is compared as "1000").
func plainLiteral(s string) bool {
	word := false
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' ' || r == '_' || r == '.' || r == '-' || r == ':') {
			return false
		}
		if (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') && r != 'e' && r != 'E' {
			word = true
		}
	}
	return word
}

func lookup(d any, sel []step) (any, bool) {
	cur := d
	for _, st := range sel {
		if st.index >= 0 {
			arr, ok := cur.([]any)
			if !ok || st.index >= len(arr) {
				return nil, false
			}
			cur = arr[st.index]
			continue
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[st.field]; !ok {
			return nil, false
		}
	}
	return cur, true
}

type jparser struct {
	src string
	cursor
	regexes *int // %regex% values so far
}

func (p *jparser) errf(format string, a ...any) error {
	return patternErr("Invalid filter pattern %q: %s", p.src, fmt.Sprintf(format, a...))
}

// or parses the selectors' boolean structure (boolExpr).
func (p *jparser) or() (node, error) {
	return boolExpr[node]{c: &p.cursor, leaf: p.comparison,
		and: func(l, r node) node { return andNode{l, r} }, or: func(l, r node) node { return orNode{l, r} },
		missingParen: func() error { return p.errf("missing )") }}.parse()
}

func (p *jparser) comparison() (node, error) {
	p.skip()
	if !strings.HasPrefix(p.s, "$") {
		return nil, p.errf("expected a selector such as $.field at %q", p.s)
	}
	p.s = p.s[1:]
	var sel []step
	for {
		switch {
		case strings.HasPrefix(p.s, "."):
			p.s = p.s[1:]
			end := strings.IndexFunc(p.s, func(r rune) bool {
				return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '@' || r == ':')
			})
			if end < 0 {
				end = len(p.s)
			}
			if end == 0 {
				return nil, p.errf("expected a field name after '.' at %q", p.s)
			}
			sel = append(sel, step{field: p.s[:end], index: -1})
			p.s = p.s[end:]
			continue
		case strings.HasPrefix(p.s, "["):
			end := strings.IndexByte(p.s, ']')
			if end < 0 {
				return nil, p.errf("missing ] in selector")
			}
			i, err := strconv.Atoi(strings.TrimSpace(p.s[1:end]))
			if err != nil || i < 0 {
				return nil, p.errf("array index %q is not a number", p.s[1:end])
			}
			sel = append(sel, step{index: i})
			p.s = p.s[end+1:]
			continue
		}
		break
	}
	if len(sel) == 0 {
		return nil, p.errf("selector $ needs a field, e.g. $.level")
	}
	n := cmpNode{sel: sel}
	p.skip()
	upper := strings.ToUpper(p.s)
	for _, kw := range []struct{ word, op string }{{"IS TRUE", "istrue"}, {"IS FALSE", "isfalse"}, {"IS NULL", "isnull"}, {"NOT EXISTS", "notexists"}, {"EXISTS", "exists"}} {
		if strings.HasPrefix(upper, kw.word) {
			p.s = p.s[len(kw.word):]
			n.op = kw.op
			return n, nil
		}
	}
	for _, op := range []string{"!=", "<=", ">=", "=", "<", ">"} {
		if strings.HasPrefix(p.s, op) {
			n.op = op
			p.s = p.s[len(op):]
			break
		}
	}
	if n.op == "" {
		return nil, p.errf("expected an operator (=, !=, <, >, <=, >=, IS, NOT EXISTS) at %q", p.s)
	}
	p.skip()
	switch {
	case strings.HasPrefix(p.s, "%"):
		if *p.regexes++; *p.regexes > maxRegexes {
			return nil, p.errf("at most %d regular expressions per filter pattern", maxRegexes)
		}
		re, rest, err := cutRegex(p.src, p.s)
		if err != nil {
			return nil, err
		}
		n.re, p.s = re, rest
	case strings.HasPrefix(p.s, `"`):
		end := strings.IndexByte(p.s[1:], '"')
		if end < 0 {
			return nil, p.errf("unterminated string value")
		}
		n.str, p.s = p.s[1:1+end], p.s[2+end:]
	default:
		end := strings.IndexFunc(p.s, func(r rune) bool { return unicode.IsSpace(r) || r == ')' || r == '&' || r == '|' })
		if end < 0 {
			end = len(p.s)
		}
		if end == 0 {
			return nil, p.errf("expected a value after %s", n.op)
		}
		word := p.s[:end]
		p.s = p.s[end:]
		if f, err := strconv.ParseFloat(word, 64); err == nil {
			n.num, n.isNum = f, true
		} else {
			n.str = word
		}
	}
	if !n.isNum && n.op != "=" && n.op != "!=" {
		return nil, p.errf("%s compares numbers; %q is not a number", n.op, n.str)
	}
	return n, nil
}
