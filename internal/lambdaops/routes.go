package lambdaops

import (
	"net/url"
	"strings"
)

// Route is one operation's HTTP binding.
type Route struct {
	Name   string // operation name, e.g. "AddPermission"
	Method string // HTTP method
	URI    string // template: literal segments, {Label} segments, optional ?k=v
	Status int    // success status
}

// Internal operations lambdaplane serves beside the model (its own log
// streaming endpoint, used by `lambdaplane logs`).
var internal = []Route{
	{Name: "GetLogs", Method: "GET", URI: "/_lambdaplane/logs/{FunctionName}", Status: 200},
}

type compiled struct {
	Route
	segs       []string // literal or "{Label}"
	queryKey   string   // required query parameter (e.g. find)
	queryValue string
}

var table = compile(append(append([]Route{}, model...), internal...))

func compile(rs []Route) []compiled {
	out := make([]compiled, 0, len(rs))
	for _, r := range rs {
		c := compiled{Route: r}
		path, query, _ := strings.Cut(r.URI, "?")
		c.segs = split(path)
		if query != "" {
			c.queryKey, c.queryValue, _ = strings.Cut(query, "=")
		}
		out = append(out, c)
	}
	return out
}

func split(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Model returns every operation of the Lambda model (not the internal ones).
func Model() []Route { return append([]Route(nil), model...) }

// Params are a matched request's path labels, unescaped.
type Params map[string]string

// Match names the operation of a request: method, its escaped path and its
// query. Routes with a required query parameter win over the same path
// without it. ok is false when no operation has this method and path.
func Match(method, escapedPath string, query url.Values) (Route, Params, bool) {
	raw := split(escapedPath)
	segs := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			return Route{}, nil, false
		}
		segs[i] = u
	}
	var best *compiled
	var bestParams Params
	for i := range table {
		c := &table[i]
		if c.Method != method || len(c.segs) != len(segs) {
			continue
		}
		if c.queryKey != "" && query.Get(c.queryKey) != c.queryValue {
			continue
		}
		p, ok := c.match(segs)
		if !ok {
			continue
		}
		// Prefer the route with more literal segments, then one with a
		// query requirement (GetLayerVersionByArn over ListLayers).
		if best == nil || c.literals() > best.literals() || (c.literals() == best.literals() && c.queryKey != "" && best.queryKey == "") {
			best, bestParams = c, p
		}
	}
	if best == nil {
		return Route{}, nil, false
	}
	return best.Route, bestParams, true
}

func (c *compiled) literals() int {
	n := 0
	for _, s := range c.segs {
		if !isLabel(s) {
			n++
		}
	}
	return n
}

func isLabel(s string) bool { return strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") }

func (c *compiled) match(segs []string) (Params, bool) {
	var p Params
	for i, s := range c.segs {
		if isLabel(s) {
			if segs[i] == "" {
				return nil, false
			}
			if p == nil {
				p = Params{}
			}
			p[strings.Trim(s, "{}")] = segs[i]
			continue
		}
		if s != segs[i] {
			return nil, false
		}
	}
	return p, true
}

// PathKnown reports whether any operation (with any method) has this path:
// a request whose path is known but whose method is not gets the name of
// the path's operations in its error.
func PathKnown(escapedPath string) []string {
	var names []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
		if r, _, ok := Match(m, escapedPath, url.Values{}); ok {
			names = append(names, m+" "+r.Name)
		}
	}
	return names
}

// Action is the IAM action of an operation: lambda:<Name>, except the
// invoke operations, which are all lambda:InvokeFunction (as on AWS).
func Action(op string) string {
	switch op {
	case "Invoke", "InvokeWithResponseStream", "InvokeAsync":
		return "lambda:InvokeFunction"
	}
	return "lambda:" + op
}
