package control

import (
	"regexp"
	"strings"
)

var (
	nameRe      = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	qualifierRe = regexp.MustCompile(`^(\$LATEST|[a-zA-Z0-9_-]{1,128})$`)
	versionRe   = regexp.MustCompile(`^[0-9]+$`)
	accountRe   = regexp.MustCompile(`^[0-9]{12}$`)
	aliasRe     = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
)

// Ref names a function as a caller wrote it, after parsing.
type Ref struct {
	AccountID string // account the ref names; "" when the caller gave a bare name
	Name      string
	Qualifier string // "" (= $LATEST), "$LATEST", a version number or an alias
}

// ParseRef parses a function name, partial ARN (ACCOUNT:function:NAME) or
// full ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME), each optionally
// followed by :QUALIFIER.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, validation("1 validation error detected: Value '' at 'functionName' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	if len(s) > 170 {
		return Ref{}, validation("1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 170", s)
	}
	parts := strings.Split(s, ":")
	var r Ref
	switch {
	case len(parts) >= 7 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function":
		if len(parts) > 8 {
			return Ref{}, badName(s)
		}
		r.AccountID, r.Name = parts[4], parts[6]
		if len(parts) == 8 {
			r.Qualifier = parts[7]
		}
	case len(parts) >= 3 && parts[1] == "function":
		if len(parts) > 4 {
			return Ref{}, badName(s)
		}
		r.AccountID, r.Name = parts[0], parts[2]
		if len(parts) == 4 {
			r.Qualifier = parts[3]
		}
	case len(parts) <= 2:
		r.Name = parts[0]
		if len(parts) == 2 {
			r.Qualifier = parts[1]
		}
	default:
		return Ref{}, badName(s)
	}
	if r.AccountID != "" && !accountRe.MatchString(r.AccountID) {
		return Ref{}, badName(s)
	}
	if !nameRe.MatchString(r.Name) {
		return Ref{}, badName(s)
	}
	if r.Qualifier != "" && !qualifierRe.MatchString(r.Qualifier) {
		return Ref{}, validation("1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)", r.Qualifier)
	}
	return r, nil
}

func badName(s string) *Error {
	return validation("1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?", s)
}

// FunctionARN is the unqualified ARN of a function.
func FunctionARN(region, account, name string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":function:" + name
}

// QualifiedARN appends :qualifier unless it is empty.
func QualifiedARN(region, account, name, qualifier string) string {
	if qualifier == "" {
		return FunctionARN(region, account, name)
	}
	return FunctionARN(region, account, name) + ":" + qualifier
}
