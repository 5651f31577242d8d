package logsapi

import (
	"strings"
	"unicode"
)

// cursor is the unparsed rest of a filter pattern.
type cursor struct{ s string }

func (c *cursor) skip() { c.s = strings.TrimLeftFunc(c.s, unicode.IsSpace) }

// eat consumes tok after any space, if it comes next.
func (c *cursor) eat(tok string) bool {
	c.skip()
	if strings.HasPrefix(c.s, tok) {
		c.s = c.s[len(tok):]
		return true
	}
	return false
}

// boolExpr parses the boolean structure both filter syntaxes share (a JSON
// pattern's selectors, a space-delimited field's conditions):
//
//	or    := and ("||" and)*
//	and   := unary ("&&" unary)*
//	unary := "(" or ")" | leaf
//
// leaf, and and or build the syntax's own nodes; missingParen is its error
// for a "(" without its ")".
type boolExpr[T any] struct {
	c            *cursor
	leaf         func() (T, error)
	and, or      func(l, r T) T
	missingParen func() error
}

func (g boolExpr[T]) parse() (T, error) { return g.binary("||", g.or, g.conj) }

func (g boolExpr[T]) conj() (T, error) { return g.binary("&&", g.and, g.unary) }

func (g boolExpr[T]) binary(op string, join func(l, r T) T, operand func() (T, error)) (T, error) {
	l, err := operand()
	if err != nil {
		return l, err
	}
	for g.c.eat(op) {
		r, err := operand()
		if err != nil {
			return r, err
		}
		l = join(l, r)
	}
	return l, nil
}

func (g boolExpr[T]) unary() (T, error) {
	if g.c.eat("(") {
		n, err := g.parse()
		if err != nil {
			return n, err
		}
		if !g.c.eat(")") {
			var zero T
			return zero, g.missingParen()
		}
		return n, nil
	}
	return g.leaf()
}
