package control

import (
	"context"
	"errors"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Tag limits, as on Lambda.
const (
	MaxTags        = 50
	MaxTagKeyLen   = 128
	MaxTagValueLen = 256
)

// ValidateTags checks tags a request adds: key and value lengths and the
// reserved aws: prefix. The count is checked against the merged set.
func ValidateTags(tags map[string]string) error {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := tags[k]
		if n := utf8.RuneCountInString(k); n < 1 || n > MaxTagKeyLen {
			return invalidParam("Tag key %q must be 1 to %d characters long", k, MaxTagKeyLen)
		}
		if utf8.RuneCountInString(v) > MaxTagValueLen {
			return invalidParam("The value of tag %q must be at most %d characters long", k, MaxTagValueLen)
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return invalidParam("Tag key %q uses the prefix aws:, which is reserved for AWS use", k)
		}
	}
	if len(tags) > MaxTags {
		return invalidParam("A resource can have at most %d tags; the request has %d", MaxTags, len(tags))
	}
	return nil
}

// TagConditions are the IAM condition keys of tags a request sets
// (aws:RequestTag/<key>, aws:TagKeys).
func TagConditions(tags map[string]string) map[string][]string {
	if len(tags) == 0 {
		return nil
	}
	cond := map[string][]string{}
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		cond["aws:RequestTag/"+k] = []string{v}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cond["aws:TagKeys"] = keys
	return cond
}

// taggedFunction parses a TagResource/UntagResource/ListTags resource: the
// unqualified ARN of a function of the caller's account and region.
func (s *Service) taggedFunction(acct, region, arn string) (string, error) {
	if !strings.HasPrefix(arn, "arn:") {
		return "", invalidParam("Resource %q is not an ARN: pass the function's ARN (arn:aws:lambda:%s:%s:function:NAME)", arn, region, acct)
	}
	parts := strings.Split(arn, ":")
	if len(parts) < 6 || parts[2] != "lambda" {
		return "", invalidParam("Resource %q is not a Lambda ARN: pass the function's ARN (arn:aws:lambda:%s:%s:function:NAME)", arn, region, acct)
	}
	if parts[5] != "function" {
		return "", invalidParam("Resource %q cannot be tagged: Lambda tags functions (arn:aws:lambda:%s:%s:function:NAME), not %ss", arn, region, acct, parts[5])
	}
	r, err := ParseRef(arn)
	if err != nil {
		return "", err
	}
	if r.Qualifier != "" {
		return "", invalidParam("Tags are not supported on function versions or aliases: %s; tag the unqualified function ARN", arn)
	}
	if err := refInAccount(r, acct, region); err != nil {
		return "", err
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return "", err
	}
	return r.Name, nil
}

// ListTags returns a function's tags.
func (s *Service) ListTags(ctx context.Context, acct, region, arn string) (map[string]string, error) {
	name, err := s.taggedFunction(acct, region, arn)
	if err != nil {
		return nil, err
	}
	fn, err := s.lookup(acct, region, name)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(fn.Tags))
	for k, v := range fn.Tags {
		out[k] = v
	}
	return out, nil
}

// ResourceTags returns the tags of a function named by name or ARN (nil if
// it does not exist): the aws:ResourceTag condition keys of a request.
func (s *Service) ResourceTags(acct, nameOrARN string) map[string]string {
	r, err := ParseRef(nameOrARN)
	if err != nil {
		return nil
	}
	if fn := s.cache.fn(fnKey(acct, r.Name)); fn != nil {
		return fn.Tags
	}
	return nil
}

// TagResource adds or replaces tags of a function.
func (s *Service) TagResource(ctx context.Context, acct, region, arn string, tags map[string]string) error {
	if len(tags) == 0 {
		return invalidParam("Tags is required: pass at least one tag (--tags KEY=VALUE)")
	}
	if err := ValidateTags(tags); err != nil {
		return err
	}
	return s.updateTags(ctx, acct, region, arn, func(cur map[string]string) {
		for k, v := range tags {
			cur[k] = v
		}
	})
}

// UntagResource removes tags of a function (absent keys are ignored).
func (s *Service) UntagResource(ctx context.Context, acct, region, arn string, keys []string) error {
	if len(keys) == 0 {
		return invalidParam("TagKeys is required: pass at least one key (--tag-keys KEY)")
	}
	for _, k := range keys {
		if n := utf8.RuneCountInString(k); n < 1 || n > MaxTagKeyLen {
			return invalidParam("Tag key %q must be 1 to %d characters long", k, MaxTagKeyLen)
		}
	}
	return s.updateTags(ctx, acct, region, arn, func(cur map[string]string) {
		for _, k := range keys {
			delete(cur, k)
		}
	})
}

// updateTags changes a function's tags under the record's revision. Tags
// are not configuration: $LATEST's RevisionId stays.
func (s *Service) updateTags(ctx context.Context, acct, region, arn string, change func(map[string]string)) error {
	name, err := s.taggedFunction(acct, region, arn)
	if err != nil {
		return err
	}
	fn, rev, err := s.fns.Update(ctx, fnKey(acct, name), func(f *Function) error {
		cur := map[string]string{}
		for k, v := range f.Tags {
			cur[k] = v
		}
		change(cur)
		if len(cur) > MaxTags {
			return invalidParam("A resource can have at most %d tags; %s would have %d", MaxTags, arn, len(cur))
		}
		if len(cur) == 0 {
			cur = nil
		}
		f.Tags = cur
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return notFound("Function not found: %s", FunctionARN(region, acct, name))
	}
	if err != nil {
		return err
	}
	s.cache.putFn(fnKey(acct, name), fn, rev)
	return nil
}
