package sqsapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"slices"
	"strconv"

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

func renderJSON(kids []node) []byte {
	b, _ := json.Marshal(obj("", kids...).jsonValue())
	return b
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
