package control

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Function URLs (Create/Get/Update/Delete/ListFunctionUrlConfigs). One
// record per (function, qualifier) in the "functionurls" bucket, keyed like
// policies; the watch-fed mirror indexes them by URL id so any host's URL
// listener finds the function of a request's Host.

// Function URL auth types and invoke modes.
const (
	URLAuthNone   = "NONE"
	URLAuthIAM    = "AWS_IAM"
	InvokeBuffer  = "BUFFERED"
	InvokeStream  = "RESPONSE_STREAM"
	urlIDAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Cors is a function URL's CORS configuration (Lambda's Cors shape).
type Cors struct {
	AllowCredentials *bool    `json:"AllowCredentials,omitempty"`
	AllowHeaders     []string `json:"AllowHeaders,omitempty"`
	AllowMethods     []string `json:"AllowMethods,omitempty"`
	AllowOrigins     []string `json:"AllowOrigins,omitempty"`
	ExposeHeaders    []string `json:"ExposeHeaders,omitempty"`
	MaxAge           *int     `json:"MaxAge,omitempty"`
}

// FunctionURL is the stored configuration of one function URL.
type FunctionURL struct {
	ID              string    `json:"ID"` // 32 lowercase alphanumerics
	AccountID       string    `json:"AccountID"`
	Region          string    `json:"Region"`
	FunctionName    string    `json:"FunctionName"`
	Qualifier       string    `json:"Qualifier,omitempty"`
	AuthType        string    `json:"AuthType"`
	Cors            *Cors     `json:"Cors,omitempty"`
	InvokeMode      string    `json:"InvokeMode"`
	Created         time.Time `json:"Created"`
	LastModified    time.Time `json:"LastModified"`
	FunctionCreated time.Time `json:"FunctionCreated"`
}

// FunctionARN is the (qualified) ARN of the URL's function.
func (u *FunctionURL) FunctionARN() string {
	return QualifiedARN(u.Region, u.AccountID, u.FunctionName, u.Qualifier)
}

// URLInput is Create/UpdateFunctionUrlConfig's body.
type URLInput struct {
	AuthType   *string `json:"AuthType"`
	Cors       *Cors   `json:"Cors"`
	InvokeMode *string `json:"InvokeMode"`
}

type urlState struct {
	table *store.Table[FunctionURL]
	mu    sync.RWMutex
	m     map[string]cached[FunctionURL] // by record key
	byID  map[string]string              // URL id -> record key
}

func newURLState() *urlState {
	return &urlState{m: map[string]cached[FunctionURL]{}, byID: map[string]string{}}
}

func (u *urlState) put(key string, v *FunctionURL, rev uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cur, ok := u.m[key]
	if ok && rev != 0 && rev <= cur.rev {
		return
	}
	if ok && cur.v != nil && u.byID[cur.v.ID] == key {
		delete(u.byID, cur.v.ID)
	}
	switch {
	case v == nil && rev != 0:
		delete(u.m, key)
		return
	case v == nil:
		if !ok {
			return
		}
		rev = cur.rev
	}
	u.m[key] = cached[FunctionURL]{v: v, rev: rev}
	if v != nil {
		u.byID[v.ID] = key
	}
}

func (s *Service) openURLs(ctx, wctx context.Context) error {
	var err error
	if s.access.urls.table, err = store.NewTable[FunctionURL](ctx, s.o.Store, "functionurls"); err != nil {
		return err
	}
	return watch(wctx, s.access.urls.table.KV(), track(&s.access.applied[1], s.access.urls.put))
}

func newURLID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = urlIDAlphabet[int(b[i])%len(urlIDAlphabet)]
	}
	return string(b[:])
}

// URLByID returns the function URL with the id (from the mirror) if its
// function still exists.
func (s *Service) URLByID(id string) *FunctionURL {
	if s.access == nil {
		return nil
	}
	u := s.access.urls
	u.mu.RLock()
	key, ok := u.byID[id]
	var v *FunctionURL
	if ok {
		v = u.m[key].v
	}
	u.mu.RUnlock()
	if v == nil {
		return nil
	}
	fn := s.cache.fn(fnKey(v.AccountID, v.FunctionName))
	if fn == nil || !fn.Created.Equal(v.FunctionCreated) {
		return nil
	}
	return v
}

// urlTarget resolves the function and qualifier of a URL call: the
// qualifier may only be an alias ($LATEST counts as none).
func (s *Service) urlTarget(acct, region, name, qualifier string) (Ref, *Function, error) {
	r, err := qualifiedRef(acct, region, name, qualifier)
	if err != nil {
		return Ref{}, nil, err
	}
	qualifier = r.Qualifier
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return Ref{}, nil, err
	}
	if qualifier != "" {
		if versionRe.MatchString(qualifier) {
			return Ref{}, nil, validation("1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$): function URLs attach to the function or an alias, not a version", qualifier)
		}
		if s.cache.alias(aliasKey(acct, r.Name, qualifier)) == nil {
			return Ref{}, nil, notFound("Function not found: %s", QualifiedARN(region, acct, r.Name, qualifier))
		}
	}
	r.Qualifier = qualifier
	return r, fn, nil
}

func validateURLInput(in *URLInput, create bool) error {
	if create && (in.AuthType == nil || *in.AuthType == "") {
		return validation("1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null")
	}
	if in.AuthType != nil && *in.AuthType != URLAuthNone && *in.AuthType != URLAuthIAM {
		return validation("1 validation error detected: Value '%s' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]", *in.AuthType)
	}
	if in.InvokeMode != nil && *in.InvokeMode != InvokeBuffer && *in.InvokeMode != InvokeStream {
		return validation("1 validation error detected: Value '%s' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]", *in.InvokeMode)
	}
	if c := in.Cors; c != nil {
		if c.MaxAge != nil && (*c.MaxAge < 0 || *c.MaxAge > 86400) {
			return validation("1 validation error detected: Value '%d' at 'cors.maxAge' failed to satisfy constraint: Member must have value between 0 and 86400", *c.MaxAge)
		}
		for _, m := range c.AllowMethods {
			switch strings.ToUpper(m) {
			case "*", "GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS":
			default:
				return validation("1 validation error detected: Value '[%s]' at 'cors.allowMethods' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy regular expression pattern: .*]: %q is not an HTTP method (GET, PUT, HEAD, POST, PATCH, DELETE, OPTIONS or *)", strings.Join(c.AllowMethods, ", "), m)
			}
		}
		for _, o := range c.AllowOrigins {
			if o == "" || len(o) > 253 {
				return validation("1 validation error detected: Value at 'cors.allowOrigins' failed to satisfy constraint: Member must have length between 1 and 253")
			}
		}
		if len(c.AllowOrigins) > 100 || len(c.AllowHeaders) > 100 || len(c.ExposeHeaders) > 100 || len(c.AllowMethods) > 6 {
			return validation("1 validation error detected: Cors lists are too long (AllowOrigins, AllowHeaders, ExposeHeaders at most 100 entries, AllowMethods at most 6)")
		}
	}
	return nil
}

// CreateFunctionURL creates the URL of a function or alias.
func (s *Service) CreateFunctionURL(ctx context.Context, acct, region, name, qualifier string, in *URLInput) (*FunctionURL, error) {
	if err := validateURLInput(in, true); err != nil {
		return nil, err
	}
	r, fn, err := s.urlTarget(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	now := s.o.Now().UTC()
	u := &FunctionURL{ID: newURLID(), AccountID: acct, Region: region, FunctionName: r.Name, Qualifier: r.Qualifier,
		AuthType: *in.AuthType, Cors: in.Cors, InvokeMode: InvokeBuffer, Created: now, LastModified: now, FunctionCreated: fn.Created}
	if in.InvokeMode != nil {
		u.InvokeMode = *in.InvokeMode
	}
	key := policyKey(acct, r.Name, r.Qualifier)
	rev, err := s.access.urls.table.Create(ctx, key, u)
	if errors.Is(err, store.ErrExists) {
		old, orev, gerr := s.access.urls.table.Get(ctx, key)
		if gerr == nil && !old.FunctionCreated.Equal(fn.Created) {
			// Left by a deleted function of the same name: replace it.
			rev, err = s.access.urls.table.UpdateAt(ctx, key, u, orev)
		} else {
			return nil, conflict("Failed to create function url config for [functionArn = %s]. Error message:  FunctionUrlConfig exists for this Lambda function", QualifiedARN(region, acct, r.Name, r.Qualifier))
		}
	}
	if err != nil {
		return nil, err
	}
	s.access.urls.put(key, u, rev)
	s.log.Info("function URL created", "account", acct, "function", r.Name, "qualifier", r.Qualifier, "id", u.ID, "auth", u.AuthType)
	return u, nil
}

// GetFunctionURL returns the URL of a function or alias.
func (s *Service) GetFunctionURL(ctx context.Context, acct, region, name, qualifier string) (*FunctionURL, error) {
	r, fn, err := s.urlTarget(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	u, _, err := s.access.urls.table.Get(ctx, policyKey(acct, r.Name, r.Qualifier))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.FunctionCreated.Equal(fn.Created)) {
		return nil, notFound("The resource you requested does not exist.")
	}
	return u, err
}

// UpdateFunctionURL changes the auth type, CORS or invoke mode of a URL.
func (s *Service) UpdateFunctionURL(ctx context.Context, acct, region, name, qualifier string, in *URLInput) (*FunctionURL, error) {
	if err := validateURLInput(in, false); err != nil {
		return nil, err
	}
	r, fn, err := s.urlTarget(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	key := policyKey(acct, r.Name, r.Qualifier)
	u, rev, err := s.access.urls.table.Update(ctx, key, func(u *FunctionURL) error {
		if !u.FunctionCreated.Equal(fn.Created) {
			return notFound("The resource you requested does not exist.")
		}
		if in.AuthType != nil {
			u.AuthType = *in.AuthType
		}
		if in.Cors != nil {
			u.Cors = in.Cors
		}
		if in.InvokeMode != nil {
			u.InvokeMode = *in.InvokeMode
		}
		u.LastModified = s.o.Now().UTC()
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("The resource you requested does not exist.")
	}
	if err != nil {
		return nil, err
	}
	s.access.urls.put(key, u, rev)
	return u, nil
}

// DeleteFunctionURL removes a URL.
func (s *Service) DeleteFunctionURL(ctx context.Context, acct, region, name, qualifier string) error {
	r, fn, err := s.urlTarget(acct, region, name, qualifier)
	if err != nil {
		return err
	}
	key := policyKey(acct, r.Name, r.Qualifier)
	u, _, err := s.access.urls.table.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.FunctionCreated.Equal(fn.Created)) {
		return notFound("The resource you requested does not exist.")
	}
	if err != nil {
		return err
	}
	if err := s.access.urls.table.Delete(ctx, key); err != nil {
		return err
	}
	s.access.urls.put(key, nil, 0)
	return nil
}

// ListFunctionURLs lists the URLs of a function and its aliases.
func (s *Service) ListFunctionURLs(ctx context.Context, acct, region, name, marker string, maxItems int) ([]FunctionURL, string, error) {
	if err := checkMaxItems(maxItems); err != nil {
		return nil, "", err
	}
	if maxItems == 0 {
		maxItems = 50
	}
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, "", err
	}
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return nil, "", err
	}
	prefix := acct + "." + r.Name
	var all []FunctionURL
	u := s.access.urls
	u.mu.RLock()
	for _, k := range sortedKeys(u.m) {
		v := u.m[k].v
		if v != nil && (k == prefix || strings.HasPrefix(k, prefix+".")) && v.FunctionCreated.Equal(fn.Created) {
			all = append(all, *v)
		}
	}
	u.mu.RUnlock()
	return page(all, marker, maxItems, func(f FunctionURL) string { return f.ID })
}

// deleteURLs removes the URLs of a deleted function (every qualifier) or
// of one deleted alias.
func (s *Service) deleteURLs(ctx context.Context, acct, name, qualifier string) {
	if s.access == nil {
		return
	}
	prefix := acct + "." + name
	var keys []string
	u := s.access.urls
	u.mu.RLock()
	for k, c := range u.m {
		if c.v == nil {
			continue
		}
		if (qualifier == "" && (k == prefix || strings.HasPrefix(k, prefix+"."))) || (qualifier != "" && k == prefix+"."+qualifier) {
			keys = append(keys, k)
		}
	}
	u.mu.RUnlock()
	for _, k := range keys {
		if err := u.table.Delete(ctx, k); err != nil {
			s.log.Warn("delete function URL", "key", k, "err", err)
			continue
		}
		u.put(k, nil, 0)
	}
}

// ForgetFunction removes the resource policies and URLs of a deleted
// function, or (qualifier) of a deleted version or alias.
func (s *Service) forgetAccess(ctx context.Context, acct, name, qualifier string) {
	s.deletePolicies(ctx, acct, name, qualifier)
	s.deleteURLs(ctx, acct, name, qualifier)
}
