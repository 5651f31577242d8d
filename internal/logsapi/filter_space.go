package logsapi

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
)

// Space-delimited patterns and regular expressions, as CloudWatch Logs
// reads them:
//
//   - [ip, user, username, timestamp, request = *html*, status_code = 4*, bytes > 1000]
//     names the fields of a line split on spaces (text in "double quotes"
//     or [square brackets] is one field, without them); a pattern without
//     ... matches lines of exactly that many fields, and each ... matches
//     any number of fields. A field may carry conditions on its value:
//     = != with a "string", a word with * wildcards, a number or a
//     %regex%; < > <= >= with a number; joined with && and || (and
//     parentheses), each naming the field itself.
//   - %regex% is a regular expression (RE2 syntax; case-sensitive),
//     alone, as a term among others (-%re% and ?%re% too), as a JSON
//     pattern's value ({ $.level = %ERR|WARN% }) or a field's.

// rx is a compiled %regex% with a literal every match contains (the
// longest run of its top-level concatenation), checked first: most lines
// of a log lack it, and bytes.Contains is many times faster than the
// regular expression.
type rx struct {
	re  *regexp.Regexp
	lit []byte // nil: none known
}

func newRx(re *regexp.Regexp) *rx {
	r := &rx{re: re}
	t, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return r
	}
	lit := func(n *syntax.Regexp) string {
		if n.Op == syntax.OpLiteral && n.Flags&syntax.FoldCase == 0 {
			return string(n.Rune)
		}
		return ""
	}
	best := lit(t)
	if t.Op == syntax.OpConcat {
		for _, sub := range t.Sub {
			if l := lit(sub); len(l) > len(best) {
				best = l
			}
		}
	}
	if best != "" {
		r.lit = []byte(best)
	}
	return r
}

func (r *rx) match(b []byte) bool {
	if r.lit != nil && !bytes.Contains(b, r.lit) {
		return false
	}
	return r.re.Match(b)
}

func (r *rx) matchString(s string) bool {
	if r.lit != nil && !strings.Contains(s, string(r.lit)) {
		return false
	}
	return r.re.MatchString(s)
}

// maxRegexes is how many regular expressions one pattern may hold (as
// on CloudWatch Logs).
const maxRegexes = 2

// cutRegex reads a %regex% at the start of s (s[0] == '%'): the compiled
// expression and the rest of s. \% is a literal percent sign.
func cutRegex(src, s string) (*rx, string, error) {
	i := 1
	var b strings.Builder
	for ; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		if s[i] == '%' {
			break
		}
		b.WriteByte(s[i])
	}
	if i >= len(s) {
		return nil, "", patternErr("Invalid filter pattern %q: unterminated regular expression (end it with %%)", src)
	}
	if b.Len() == 0 {
		return nil, "", patternErr("Invalid filter pattern %q: empty regular expression %%%%", src)
	}
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, "", patternErr("Invalid filter pattern %q: regular expression %%%s%%: %v", src, b.String(), err)
	}
	return newRx(re), s[i+1:], nil
}

// globMatch matches s against a pattern whose * matches any run of
// characters (any other character matches itself).
func globMatch(pattern, s string) bool {
	star, next := -1, 0
	pi, si := 0, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, next = pi, si
			pi++
		case pi < len(pattern) && pattern[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi, next = star+1, next+1
			si = next
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// spacePattern is a compiled space-delimited pattern.
type spacePattern struct {
	fields []spaceField
	// need: literals a matching line contains (from fields whose only
	// condition is = a string or wildcard, or a %regex% with a literal),
	// checked on the line's bytes before it is split.
	need [][]byte
}

type spaceField struct {
	name     string
	ellipsis bool
	cond     fieldCond // nil: any value
}

// fieldCond is a condition on one field's value.
type fieldCond interface{ holds(v string) bool }

type fieldAnd struct{ l, r fieldCond }
type fieldOr struct{ l, r fieldCond }

func (c fieldAnd) holds(v string) bool { return c.l.holds(v) && c.r.holds(v) }
func (c fieldOr) holds(v string) bool  { return c.l.holds(v) || c.r.holds(v) }

type fieldCmp struct {
	op    string // = != < > <= >=
	str   string
	num   float64
	isNum bool
	re    *rx
}

func (c fieldCmp) holds(v string) bool {
	if c.isNum {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return c.op == "!="
		}
		switch c.op {
		case "=":
			return f == c.num
		case "!=":
			return f != c.num
		case "<":
			return f < c.num
		case ">":
			return f > c.num
		case "<=":
			return f <= c.num
		case ">=":
			return f >= c.num
		}
		return false
	}
	var eq bool
	switch {
	case c.re != nil:
		eq = c.re.matchString(v)
	case strings.IndexByte(c.str, '*') >= 0:
		eq = globMatch(c.str, v)
	default:
		eq = v == c.str
	}
	return eq == (c.op == "=")
}

// compileSpace parses "[field, field op value, ..., field]".
func compileSpace(src, s string, regexes *int) (*spacePattern, error) {
	if !strings.HasSuffix(s, "]") {
		return nil, patternErr("Invalid filter pattern %q: a space-delimited pattern must end with ]", src)
	}
	inner := strings.TrimSpace(s[1 : len(s)-1])
	if inner == "" {
		return nil, patternErr("Invalid filter pattern %q: a space-delimited pattern names at least one field", src)
	}
	sp := &spacePattern{}
	seen := map[string]bool{}
	for _, el := range splitTopLevel(inner) {
		el = strings.TrimSpace(el)
		if el == "" {
			return nil, patternErr("Invalid filter pattern %q: empty field between commas", src)
		}
		if el == "..." {
			sp.fields = append(sp.fields, spaceField{ellipsis: true})
			continue
		}
		// The field's name: its first word (conditions may open with "(").
		head := strings.TrimLeft(el, "( \t")
		end := strings.IndexFunc(head, func(r rune) bool { return !isFieldRune(r) })
		if end < 0 {
			end = len(head)
		}
		if end == 0 {
			return nil, patternErr("Invalid filter pattern %q: expected a field name at %q", src, el)
		}
		f := spaceField{name: head[:end]}
		if seen[f.name] {
			return nil, patternErr("Invalid filter pattern %q: field %s named twice", src, f.name)
		}
		seen[f.name] = true
		if strings.TrimSpace(el) != f.name {
			p := &fparser{src: src, field: f.name, cursor: cursor{el}, regexes: regexes}
			c, err := p.or()
			if err != nil {
				return nil, err
			}
			p.skip()
			if p.s != "" {
				return nil, patternErr("Invalid filter pattern %q: unexpected %q in field %s", src, p.s, f.name)
			}
			f.cond = c
		}
		sp.fields = append(sp.fields, f)
		if c, ok := f.cond.(fieldCmp); ok && c.op == "=" && !c.isNum {
			if c.re != nil {
				if c.re.lit != nil {
					sp.need = append(sp.need, c.re.lit)
				}
			} else if l := longestPiece(c.str); l != "" {
				sp.need = append(sp.need, []byte(l))
			}
		}
	}
	return sp, nil
}

// longestPiece is the longest literal run of a * wildcard pattern.
func longestPiece(glob string) string {
	best := ""
	for _, p := range strings.Split(glob, "*") {
		if len(p) > len(best) {
			best = p
		}
	}
	return best
}

// matchBytes is match with the literal prefilter.
func (sp *spacePattern) matchBytes(line []byte) bool {
	for _, l := range sp.need {
		if !bytes.Contains(line, l) {
			return false
		}
	}
	return sp.match(string(line))
}

func isFieldRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.'
}

// splitTopLevel splits on commas outside "quotes" and %regexes%.
func splitTopLevel(s string) []string {
	var out []string
	start := 0
	inQuote, inRegex := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inRegex && i+1 < len(s):
			i++
		case c == '"' && !inRegex:
			inQuote = !inQuote
		case c == '%' && !inQuote:
			inRegex = !inRegex
		case c == ',' && !inQuote && !inRegex:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// fparser parses one field's conditions.
type fparser struct {
	src, field string
	cursor
	regexes *int
}

func (p *fparser) errf(format string, a ...any) error {
	return patternErr("Invalid filter pattern %q: field %s: "+format, append([]any{p.src, p.field}, a...)...)
}

// or parses the conditions' boolean structure (boolExpr).
func (p *fparser) or() (fieldCond, error) {
	return boolExpr[fieldCond]{c: &p.cursor, leaf: p.condition,
		and: func(l, r fieldCond) fieldCond { return fieldAnd{l, r} }, or: func(l, r fieldCond) fieldCond { return fieldOr{l, r} },
		missingParen: func() error { return p.errf("missing )") }}.parse()
}

// condition parses one comparison of the field.
func (p *fparser) condition() (fieldCond, error) {
	p.skip()
	end := strings.IndexFunc(p.s, func(r rune) bool { return !isFieldRune(r) })
	if end < 0 {
		end = len(p.s)
	}
	if name := p.s[:end]; name != p.field {
		return nil, p.errf("a condition must name the field itself, not %q", name)
	}
	p.s = p.s[end:]
	p.skip()
	var c fieldCmp
	for _, op := range []string{"!=", "<=", ">=", "=", "<", ">"} {
		if strings.HasPrefix(p.s, op) {
			c.op, p.s = op, p.s[len(op):]
			break
		}
	}
	if c.op == "" {
		return nil, p.errf("expected an operator (=, !=, <, >, <=, >=) at %q", p.s)
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
		c.re, p.s = re, rest
	case strings.HasPrefix(p.s, `"`):
		end := strings.IndexByte(p.s[1:], '"')
		if end < 0 {
			return nil, p.errf("unterminated string value")
		}
		c.str, p.s = p.s[1:1+end], p.s[2+end:]
	default:
		end := strings.IndexFunc(p.s, func(r rune) bool { return unicode.IsSpace(r) || r == ')' || r == '&' || r == '|' })
		if end < 0 {
			end = len(p.s)
		}
		if end == 0 {
			return nil, p.errf("expected a value after %s", c.op)
		}
		word := p.s[:end]
		p.s = p.s[end:]
		if f, err := strconv.ParseFloat(word, 64); err == nil {
			c.num, c.isNum = f, true
		} else {
			c.str = word
		}
	}
	if !c.isNum && c.op != "=" && c.op != "!=" {
		return nil, p.errf("%s compares numbers; the value is not a number", c.op)
	}
	return c, nil
}

// splitFields splits a log line into space-delimited fields: "quoted" and
// [bracketed] text is one field, given without its delimiters.
func splitFields(line string, out []string) []string {
	out = out[:0]
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r') {
			i++
		}
		if i >= len(line) {
			return out
		}
		var closer byte
		switch line[i] {
		case '"':
			closer = '"'
		case '[':
			closer = ']'
		}
		if closer != 0 {
			if j := strings.IndexByte(line[i+1:], closer); j >= 0 {
				out = append(out, line[i+1:i+1+j])
				i += j + 2
				continue
			}
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '\n' && line[j] != '\r' {
			j++
		}
		out = append(out, line[i:j])
		i = j
	}
}

// match reports whether line's fields fit the pattern.
func (sp *spacePattern) match(line string) bool {
	var buf [32]string
	return sp.fit(0, splitFields(line, buf[:0]))
}

func (sp *spacePattern) fit(pi int, fields []string) bool {
	for ; pi < len(sp.fields); pi++ {
		f := &sp.fields[pi]
		if f.ellipsis {
			if pi == len(sp.fields)-1 {
				return true
			}
			for k := 0; k <= len(fields); k++ {
				if sp.fit(pi+1, fields[k:]) {
					return true
				}
			}
			return false
		}
		if len(fields) == 0 || (f.cond != nil && !f.cond.holds(fields[0])) {
			return false
		}
		fields = fields[1:]
	}
	return len(fields) == 0
}
