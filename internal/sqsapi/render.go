package sqsapi

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

// node is one piece of a response, rendered as JSON or as SQS's XML.
type node struct {
	key     string
	kind    int // nStr, nBool, nObj, nList, nMap, nAttrs
	s       string
	b       bool
	kids    []node
	item    string // XML element of a list item / map entry
	mkey    string // map entry key/value element names
	mval    string
	m       map[string]string
	attrs   map[string]sqs.MessageAttributeValue
	present bool
}

const (
	nStr = iota
	nBool
	nObj
	nList
	nMap
	nAttrs
)

func str(k, v string) node            { return node{key: k, kind: nStr, s: v, present: v != ""} }
func boolean(k string, v bool) node   { return node{key: k, kind: nBool, b: v, present: true} }
func obj(k string, kids ...node) node { return node{key: k, kind: nObj, kids: kids, present: true} }
func list(k, item string, items []node) node {
	return node{key: k, kind: nList, item: item, kids: items, present: true}
}
func smap(k, item, mkey, mval string, m map[string]string) node {
	return node{key: k, kind: nMap, item: item, mkey: mkey, mval: mval, m: m, present: len(m) > 0}
}
func mattrs(k string, m map[string]sqs.MessageAttributeValue) node {
	return node{key: k, kind: nAttrs, attrs: m, present: len(m) > 0}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// jsonValue renders n's value.
func (n node) jsonValue() any {
	switch n.kind {
	case nStr:
		return n.s
	case nBool:
		return n.b
	case nObj:
		o := map[string]any{}
		for _, k := range n.kids {
			if k.present {
				o[k.key] = k.jsonValue()
			}
		}
		return o
	case nList:
		a := make([]any, 0, len(n.kids))
		for _, k := range n.kids {
			a = append(a, k.jsonValue())
		}
		return a
	case nMap:
		return n.m
	case nAttrs:
		o := map[string]any{}
		for k, v := range n.attrs {
			e := map[string]any{"DataType": v.DataType}
			if v.BinaryValue != nil {
				e["BinaryValue"] = base64.StdEncoding.EncodeToString(v.BinaryValue)
			} else {
				e["StringValue"] = v.StringValue
			}
			o[k] = e
		}
		return o
	}
	return nil
}

// renderJSON renders a response object straight into bytes (no
// intermediate maps: this is every JSON response's path).
func renderJSON(kids []node) []byte {
	return obj("", kids...).appendJSON(make([]byte, 0, 512))
}

// appendJSON appends n's value as JSON (the same document jsonValue
// marshals to, members in node order).
func (n node) appendJSON(b []byte) []byte {
	switch n.kind {
	case nStr:
		return appendJSONString(b, n.s)
	case nBool:
		return strconv.AppendBool(b, n.b)
	case nObj:
		b = append(b, '{')
		first := true
		for _, k := range n.kids {
			if !k.present {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, k.key)
			b = append(b, ':')
			b = k.appendJSON(b)
		}
		return append(b, '}')
	case nList:
		b = append(b, '[')
		for i, k := range n.kids {
			if i > 0 {
				b = append(b, ',')
			}
			b = k.appendJSON(b)
		}
		return append(b, ']')
	case nMap:
		if n.m == nil {
			return append(b, "null"...)
		}
		b = append(b, '{')
		for i, k := range sortedKeys(n.m) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, n.m[k])
		}
		return append(b, '}')
	case nAttrs:
		b = append(b, '{')
		for i, k := range sortedKeys(n.attrs) {
			v := n.attrs[k]
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, `:{"DataType":`...)
			b = appendJSONString(b, v.DataType)
			if v.BinaryValue != nil {
				b = append(b, `,"BinaryValue":"`...)
				b = base64.StdEncoding.AppendEncode(b, v.BinaryValue)
				b = append(b, '"')
			} else {
				b = append(b, `,"StringValue":`...)
				b = appendJSONString(b, v.StringValue)
			}
			b = append(b, '}')
		}
		return append(b, '}')
	}
	return append(b, "null"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 as U+FFFD (as encoding/json).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func xmlText(b *bytes.Buffer, s string) { _ = xml.EscapeText(b, []byte(s)) }

func elem(b *bytes.Buffer, name, text string) {
	b.WriteString("<" + name + ">")
	xmlText(b, text)
	b.WriteString("</" + name + ">")
}

// xmlTo renders n as XML into b (name overrides the element name).
func (n node) xmlTo(b *bytes.Buffer, name string) {
	if !n.present {
		return
	}
	switch n.kind {
	case nStr:
		elem(b, name, n.s)
	case nBool:
		elem(b, name, strconv.FormatBool(n.b))
	case nObj:
		b.WriteString("<" + name + ">")
		for _, k := range n.kids {
			k.xmlTo(b, k.key)
		}
		b.WriteString("</" + name + ">")
	case nList:
		for _, k := range n.kids {
			k.present = true
			k.xmlTo(b, n.item)
		}
	case nMap:
		for _, k := range sortedKeys(n.m) {
			b.WriteString("<" + n.item + ">")
			elem(b, n.mkey, k)
			elem(b, n.mval, n.m[k])
			b.WriteString("</" + n.item + ">")
		}
	case nAttrs:
		for _, k := range sortedKeys(n.attrs) {
			v := n.attrs[k]
			b.WriteString("<MessageAttribute>")
			elem(b, "Name", k)
			b.WriteString("<Value>")
			if v.BinaryValue != nil {
				elem(b, "BinaryValue", base64.StdEncoding.EncodeToString(v.BinaryValue))
			} else {
				elem(b, "StringValue", v.StringValue)
			}
			elem(b, "DataType", v.DataType)
			b.WriteString("</Value></MessageAttribute>")
		}
	}
}
