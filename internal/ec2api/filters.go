package ec2api

import (
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// attrs are a resource's filterable values by filter name. Every filter a
// resource type supports has an entry (possibly empty).
type attrs map[string][]string

// match reports whether a resource passes all filters: for each filter, one
// of its values (with * and ? wildcards) equals one of the resource's.
func match(fs []filter, a attrs, tags []vpc.Tag) (bool, error) {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.Name, "tag:"):
			k := strings.TrimPrefix(f.Name, "tag:")
			for _, t := range tags {
				if t.Key == k {
					have = append(have, t.Value)
				}
			}
		case f.Name == "tag-key":
			for _, t := range tags {
				have = append(have, t.Key)
			}
		case f.Name == "tag-value":
			for _, t := range tags {
				have = append(have, t.Value)
			}
		default:
			v, ok := a[f.Name]
			if !ok {
				return false, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "The filter '" + f.Name + "' is invalid"}
			}
			have = v
		}
		if !anyMatch(f.Values, have) {
			return false, nil
		}
	}
	return true, nil
}

func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if glob(p, h) {
				return true
			}
		}
	}
	return false
}

// glob matches s against p where * is any run and ? any one character.
func glob(p, s string) bool {
	if !strings.ContainsAny(p, "*?") {
		return p == s
	}
	pr, sr := []rune(p), []rune(s)
	var px, sx, starP, starS = 0, 0, -1, 0
	for sx < len(sr) {
		switch {
		case px < len(pr) && (pr[px] == '?' || pr[px] == sr[sx]):
			px++
			sx++
		case px < len(pr) && pr[px] == '*':
			starP, starS = px, sx
			px++
		case starP >= 0:
			px = starP + 1
			starS++
			sx = starS
		default:
			return false
		}
	}
	for px < len(pr) && pr[px] == '*' {
		px++
	}
	return px == len(pr)
}
