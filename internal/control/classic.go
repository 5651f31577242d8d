package control

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// The classic per-function settings (recursion, runtime management, the
// code signing config a function uses) and code signing configs. Function
// settings are one record per function in "fnsettings" (bound to the
// function's creation time, so a function created again under the same
// name starts from the defaults); code signing configs one record each in
// "codesigning". Both are mirrored in memory by watches.

// Recursive loop settings (PutFunctionRecursionConfig).
const (
	RecursiveLoopAllow     = "Allow"
	RecursiveLoopTerminate = "Terminate"
)

// Runtime update modes (PutRuntimeManagementConfig).
const (
	UpdateRuntimeAuto           = "Auto"
	UpdateRuntimeFunctionUpdate = "FunctionUpdate"
	UpdateRuntimeManual         = "Manual"
)

// FunctionSettings are a function's classic settings.
type FunctionSettings struct {
	AccountID            string    `json:"AccountId"`
	FunctionName         string    `json:"FunctionName"`
	FunctionCreated      time.Time `json:"FunctionCreated"`
	RecursiveLoop        string    `json:"RecursiveLoop,omitempty"`
	UpdateRuntimeOn      string    `json:"UpdateRuntimeOn,omitempty"`
	RuntimeVersionArn    string    `json:"RuntimeVersionArn,omitempty"`
	CodeSigningConfigArn string    `json:"CodeSigningConfigArn,omitempty"`
}

// CodeSigningConfig is a code signing configuration.
type CodeSigningConfig struct {
	ID                            string    `json:"Id"`
	Arn                           string    `json:"Arn"`
	AccountID                     string    `json:"AccountId"`
	Description                   string    `json:"Description"`
	SigningProfileVersionArns     []string  `json:"SigningProfileVersionArns"`
	UntrustedArtifactOnDeployment string    `json:"UntrustedArtifactOnDeployment"`
	LastModified                  time.Time `json:"LastModified"`
}

type classicState struct {
	settings *store.Table[FunctionSettings]
	csc      *store.Table[CodeSigningConfig]
	mu       sync.RWMutex
	fs       map[string]cached[FunctionSettings]
	cs       map[string]cached[CodeSigningConfig]
}

func (s *Service) openClassic(ctx, wctx context.Context) error {
	c := &classicState{fs: map[string]cached[FunctionSettings]{}, cs: map[string]cached[CodeSigningConfig]{}}
	var err error
	if c.settings, err = store.NewTable[FunctionSettings](ctx, s.o.Store, "fnsettings"); err != nil {
		return err
	}
	if c.csc, err = store.NewTable[CodeSigningConfig](ctx, s.o.Store, "codesigning"); err != nil {
		return err
	}
	s.classic = c
	if err := watch(wctx, c.settings.KV(), func(k string, v *FunctionSettings, rev uint64) { applyTo(&c.mu, c.fs, k, v, rev) }); err != nil {
		return err
	}
	return watch(wctx, c.csc.KV(), func(k string, v *CodeSigningConfig, rev uint64) { applyTo(&c.mu, c.cs, k, v, rev) })
}

// Settings returns a function's classic settings, defaults filled in
// (RecursiveLoop Terminate, UpdateRuntimeOn Auto).
func (s *Service) Settings(acct, region, name string) (*FunctionSettings, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return nil, err
	}
	return s.settingsOf(acct, r.Name, fn), nil
}

func (s *Service) settingsOf(acct, name string, fn *Function) *FunctionSettings {
	out := &FunctionSettings{AccountID: acct, FunctionName: name, FunctionCreated: fn.Created}
	s.classic.mu.RLock()
	if c, ok := s.classic.fs[fnKey(acct, name)]; ok && c.v != nil && c.v.FunctionCreated.Equal(fn.Created) {
		*out = *c.v
	}
	s.classic.mu.RUnlock()
	if out.RecursiveLoop == "" {
		out.RecursiveLoop = RecursiveLoopTerminate
	}
	if out.UpdateRuntimeOn == "" {
		out.UpdateRuntimeOn = UpdateRuntimeAuto
	}
	return out
}

// updateSettings changes a function's settings with fn.
func (s *Service) updateSettings(ctx context.Context, acct, region, name string, change func(*FunctionSettings) error) (*FunctionSettings, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	f, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return nil, err
	}
	cur := s.settingsOf(acct, r.Name, f)
	if err := change(cur); err != nil {
		return nil, err
	}
	k := fnKey(acct, r.Name)
	rev, err := s.classic.settings.Put(ctx, k, cur)
	if err != nil {
		return nil, err
	}
	applyTo(&s.classic.mu, s.classic.fs, k, cur, rev)
	return cur, nil
}

// PutRecursion sets a function's RecursiveLoop (Allow or Terminate).
func (s *Service) PutRecursion(ctx context.Context, acct, region, name, loop string) (*FunctionSettings, error) {
	if loop != RecursiveLoopAllow && loop != RecursiveLoopTerminate {
		return nil, validation("1 validation error detected: Value '%s' at 'recursiveLoop' failed to satisfy constraint: Member must satisfy enum value set: [Allow, Terminate]", loop)
	}
	return s.updateSettings(ctx, acct, region, name, func(fs *FunctionSettings) error { fs.RecursiveLoop = loop; return nil })
}

var runtimeVersionRe = regexp.MustCompile(`^arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}::runtime:.+$`)

// RuntimeVersionArn is the ARN of the runtime version lambdaplane runs for
// runtime (one version per runtime identifier on a host).
func RuntimeVersionArn(region, runtime string) string {
	sum := sha256.Sum256([]byte("lambdaplane runtime " + runtime))
	return "arn:aws:lambda:" + region + "::runtime:" + hex.EncodeToString(sum[:])
}

// PutRuntimeManagement sets a function's runtime update mode; Manual
// pins runtimeVersionArn, which must be the version this host runs for the
// function's runtime (it has no other).
func (s *Service) PutRuntimeManagement(ctx context.Context, acct, region, name, qualifier, mode, runtimeVersionArn string) (*FunctionSettings, error) {
	if qualifier != "" && qualifier != LatestVersion {
		return nil, invalidParam("Runtime management configuration applies to $LATEST only (got qualifier %s)", qualifier)
	}
	switch mode {
	case UpdateRuntimeAuto, UpdateRuntimeFunctionUpdate:
		if runtimeVersionArn != "" {
			return nil, invalidParam("RuntimeVersionArn may be set only with UpdateRuntimeOn Manual")
		}
	case UpdateRuntimeManual:
		if runtimeVersionArn == "" {
			return nil, invalidParam("RuntimeVersionArn is required when UpdateRuntimeOn is Manual")
		}
		if !runtimeVersionRe.MatchString(runtimeVersionArn) {
			return nil, validation("1 validation error detected: Value '%s' at 'runtimeVersionArn' failed to satisfy constraint: Member must satisfy regular expression pattern: ^arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}::runtime:.+$", runtimeVersionArn)
		}
		cfg, err := s.Resolve(acct, region, name, "")
		if err != nil {
			return nil, err
		}
		if want := RuntimeVersionArn(region, cfg.Runtime); runtimeVersionArn != want {
			return nil, invalidParam("Runtime version %s is not available for %s here: lambdaplane runs one version of each runtime (%s)", runtimeVersionArn, cfg.Runtime, want)
		}
	default:
		return nil, validation("1 validation error detected: Value '%s' at 'updateRuntimeOn' failed to satisfy constraint: Member must satisfy enum value set: [Auto, Manual, FunctionUpdate]", mode)
	}
	return s.updateSettings(ctx, acct, region, name, func(fs *FunctionSettings) error {
		fs.UpdateRuntimeOn, fs.RuntimeVersionArn = mode, runtimeVersionArn
		return nil
	})
}

// Code signing configs.

var signingProfileRe = regexp.MustCompile(`^arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)$`)

func errCSCNotFound(arn string) *Error {
	return errf("CodeSigningConfigNotFoundException", 404, "The code signing configuration cannot be found. Check that the provided configuration is not deleted: %s.", arn)
}

// CodeSigningInput is what Create/UpdateCodeSigningConfig carry.
type CodeSigningInput struct {
	Description       *string `json:"Description"`
	AllowedPublishers *struct {
		SigningProfileVersionArns []string `json:"SigningProfileVersionArns"`
	} `json:"AllowedPublishers"`
	CodeSigningPolicies *struct {
		UntrustedArtifactOnDeployment string `json:"UntrustedArtifactOnDeployment"`
	} `json:"CodeSigningPolicies"`
	Tags map[string]string `json:"Tags"`
}

func (in *CodeSigningInput) apply(c *CodeSigningConfig, create bool) error {
	if in.Description != nil {
		if len(*in.Description) > 256 {
			return validation("1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 256")
		}
		c.Description = *in.Description
	}
	if in.AllowedPublishers != nil {
		arns := in.AllowedPublishers.SigningProfileVersionArns
		if len(arns) < 1 || len(arns) > 20 {
			return validation("1 validation error detected: Value at 'allowedPublishers.signingProfileVersionArns' failed to satisfy constraint: Member must have length between 1 and 20")
		}
		for _, a := range arns {
			if !signingProfileRe.MatchString(a) {
				return validation("1 validation error detected: Value '%s' at 'allowedPublishers.signingProfileVersionArns' failed to satisfy constraint: Member must be an ARN", a)
			}
		}
		c.SigningProfileVersionArns = slices.Clone(arns)
	} else if create {
		return validation("1 validation error detected: Value null at 'allowedPublishers' failed to satisfy constraint: Member must not be null")
	}
	if in.CodeSigningPolicies != nil {
		switch p := in.CodeSigningPolicies.UntrustedArtifactOnDeployment; p {
		case "Warn", "Enforce":
			c.UntrustedArtifactOnDeployment = p
		default:
			return validation("1 validation error detected: Value '%s' at 'codeSigningPolicies.untrustedArtifactOnDeployment' failed to satisfy constraint: Member must satisfy enum value set: [Enforce, Warn]", p)
		}
	}
	if c.UntrustedArtifactOnDeployment == "" {
		c.UntrustedArtifactOnDeployment = "Warn"
	}
	return nil
}

// CreateCodeSigningConfig stores a new code signing config.
func (s *Service) CreateCodeSigningConfig(ctx context.Context, acct, region string, in *CodeSigningInput) (*CodeSigningConfig, error) {
	if len(in.Tags) > 0 {
		return nil, invalidParam("Tags on code signing configs are not supported by lambdaplane; create it without Tags")
	}
	var b [9]byte
	_, _ = rand.Read(b[:])
	id := "csc-" + hex.EncodeToString(b[:])[:17]
	c := &CodeSigningConfig{ID: id, AccountID: acct, Arn: "arn:aws:lambda:" + region + ":" + acct + ":code-signing-config:" + id, LastModified: s.o.Now().UTC()}
	if err := in.apply(c, true); err != nil {
		return nil, err
	}
	k := acct + "." + id
	rev, err := s.classic.csc.Create(ctx, k, c)
	if err != nil {
		return nil, err
	}
	applyTo(&s.classic.mu, s.classic.cs, k, c, rev)
	return c, nil
}

// cscKey resolves a code signing config ARN of acct to its key.
func (s *Service) cscKey(acct, arn string) (string, error) {
	i := strings.LastIndex(arn, ":code-signing-config:")
	if i < 0 || !strings.HasPrefix(arn, "arn:") {
		return "", validation("1 validation error detected: Value '%s' at 'codeSigningConfigArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\\d{1}:\\d{12}:code-signing-config:csc-[a-z0-9]{17}", arn)
	}
	parts := strings.Split(arn[:i], ":")
	if len(parts) != 5 || parts[4] != acct {
		return "", errCSCNotFound(arn)
	}
	return acct + "." + arn[i+len(":code-signing-config:"):], nil
}

// GetCodeSigningConfig returns a code signing config of acct.
func (s *Service) GetCodeSigningConfig(acct, arn string) (*CodeSigningConfig, error) {
	k, err := s.cscKey(acct, arn)
	if err != nil {
		return nil, err
	}
	s.classic.mu.RLock()
	defer s.classic.mu.RUnlock()
	c, ok := s.classic.cs[k]
	if !ok || c.v == nil {
		return nil, errCSCNotFound(arn)
	}
	v := *c.v
	return &v, nil
}

// UpdateCodeSigningConfig changes a code signing config.
func (s *Service) UpdateCodeSigningConfig(ctx context.Context, acct, arn string, in *CodeSigningInput) (*CodeSigningConfig, error) {
	k, err := s.cscKey(acct, arn)
	if err != nil {
		return nil, err
	}
	v, rev, err := s.classic.csc.Update(ctx, k, func(c *CodeSigningConfig) error {
		if err := in.apply(c, false); err != nil {
			return err
		}
		c.LastModified = s.o.Now().UTC()
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errCSCNotFound(arn)
	}
	if err != nil {
		return nil, err
	}
	applyTo(&s.classic.mu, s.classic.cs, k, v, rev)
	return v, nil
}

// DeleteCodeSigningConfig deletes a code signing config no function uses.
func (s *Service) DeleteCodeSigningConfig(ctx context.Context, acct, arn string) error {
	c, err := s.GetCodeSigningConfig(acct, arn)
	if err != nil {
		return err
	}
	if fns := s.FunctionsByCodeSigningConfig(acct, c.Arn); len(fns) > 0 {
		return conflict("The code signing configuration %s is used by %d function(s) (%s); remove it from them first (DeleteFunctionCodeSigningConfig)", c.Arn, len(fns), strings.Join(fns, ", "))
	}
	k := acct + "." + c.ID
	if err := s.classic.csc.Delete(ctx, k); err != nil {
		return err
	}
	applyTo(&s.classic.mu, s.classic.cs, k, nil, 0)
	return nil
}

// ListCodeSigningConfigs lists acct's code signing configs by id.
func (s *Service) ListCodeSigningConfigs(acct string) []CodeSigningConfig {
	var out []CodeSigningConfig
	s.classic.mu.RLock()
	for k, c := range s.classic.cs {
		if c.v != nil && strings.HasPrefix(k, acct+".") {
			out = append(out, *c.v)
		}
	}
	s.classic.mu.RUnlock()
	slices.SortFunc(out, func(a, b CodeSigningConfig) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// FunctionsByCodeSigningConfig names the functions of acct using arn.
func (s *Service) FunctionsByCodeSigningConfig(acct, arn string) []string {
	var out []string
	s.classic.mu.RLock()
	cands := map[string]FunctionSettings{}
	for _, c := range s.classic.fs {
		if c.v != nil && c.v.AccountID == acct && c.v.CodeSigningConfigArn == arn {
			cands[c.v.FunctionName] = *c.v
		}
	}
	s.classic.mu.RUnlock()
	for name, fs := range cands {
		if fn := s.cache.fn(fnKey(acct, name)); fn != nil && fn.Created.Equal(fs.FunctionCreated) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// PutFunctionCodeSigningConfig makes a function use a code signing config.
func (s *Service) PutFunctionCodeSigningConfig(ctx context.Context, acct, region, name, arn string) (*FunctionSettings, error) {
	c, err := s.GetCodeSigningConfig(acct, arn)
	if err != nil {
		return nil, err
	}
	return s.updateSettings(ctx, acct, region, name, func(fs *FunctionSettings) error { fs.CodeSigningConfigArn = c.Arn; return nil })
}

// DeleteFunctionCodeSigningConfig removes a function's code signing config.
func (s *Service) DeleteFunctionCodeSigningConfig(ctx context.Context, acct, region, name string) error {
	_, err := s.updateSettings(ctx, acct, region, name, func(fs *FunctionSettings) error { fs.CodeSigningConfigArn = ""; return nil })
	return err
}

// ErrCodeVerification builds Lambda's refusal of code that a code signing
// config with UntrustedArtifactOnDeployment Enforce does not trust:
// lambdaplane has no signing service, so no package it receives is signed.
func ErrCodeVerification(arn string) *Error {
	return errf("CodeVerificationFailedException", 400, "Lambda cannot deploy the function. The function or layer might be signed using a signature that the client is not configured to accept. Check the provided signature for %s: the code signing configuration enforces signatures (UntrustedArtifactOnDeployment Enforce) and lambdaplane has no signing service, so unsigned code is refused; set it to Warn to deploy unsigned code.", arn)
}

// CheckCodeSigning decides whether unsigned code may be deployed under
// the code signing config arn ("" = none): Enforce refuses it, Warn allows
// it (returning the warning to log).
func (s *Service) CheckCodeSigning(acct, arn string) (warning string, err error) {
	if arn == "" {
		return "", nil
	}
	c, err := s.GetCodeSigningConfig(acct, arn)
	if err != nil {
		return "", err
	}
	if c.UntrustedArtifactOnDeployment == "Enforce" {
		return "", ErrCodeVerification(c.Arn)
	}
	return fmt.Sprintf("code signing config %s: deploying unsigned code (UntrustedArtifactOnDeployment Warn)", c.Arn), nil
}
