package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/codepkg"
	"github.com/lambdaplane/lambdaplane/internal/layers"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Layer limits as Lambda documents them.
const (
	MaxLayers                  = 5
	MaxLayerName               = 140
	MaxLicenseInfo             = 512
	MaxCompatibleRuntimes      = 15
	MaxCompatibleArchitectures = 2
)

const (
	layerNamePattern = `(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+`
	layerArnPattern  = `arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+`
)

var (
	layerNameRe       = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	layerArnRe        = regexp.MustCompile(`^arn:[a-zA-Z0-9-]+:lambda:([a-zA-Z0-9-]+):(\d{12}):layer:([a-zA-Z0-9_-]+)$`)
	layerVersionArnRe = regexp.MustCompile(`^arn:[a-zA-Z0-9-]+:lambda:([a-zA-Z0-9-]+):(\d{12}):layer:([a-zA-Z0-9_-]+):([0-9]+)$`)
	runtimeIDRe       = regexp.MustCompile(`^[a-z0-9.]{1,64}$`)
)

// LayerVersion is one published, immutable version of a layer.
type LayerVersion struct {
	AccountID               string    `json:"AccountID"`
	Region                  string    `json:"Region"`
	LayerName               string    `json:"LayerName"`
	Version                 int64     `json:"Version"`
	Description             string    `json:"Description,omitempty"`
	LicenseInfo             string    `json:"LicenseInfo,omitempty"`
	CompatibleRuntimes      []string  `json:"CompatibleRuntimes,omitempty"`
	CompatibleArchitectures []string  `json:"CompatibleArchitectures,omitempty"`
	CodeSha256              string    `json:"CodeSha256"`
	CodeSize                int64     `json:"CodeSize"`
	Unzipped                int64     `json:"Unzipped"`
	Key                     string    `json:"Key"` // hex SHA-256 of the zip: object-store key
	Created                 time.Time `json:"Created"`
}

// LayerARN is the unversioned ARN of the layer.
func (v *LayerVersion) LayerARN() string { return LayerARN(v.Region, v.AccountID, v.LayerName) }

// ARN is the layer version's ARN.
func (v *LayerVersion) ARN() string {
	return v.LayerARN() + ":" + strconv.FormatInt(v.Version, 10)
}

// matches reports whether the version is listed as compatible with the
// runtime and architecture filters ("" matches everything).
func (v *LayerVersion) matches(runtime, arch string) bool {
	if runtime != "" && !contains(v.CompatibleRuntimes, runtime) {
		return false
	}
	if arch != "" && !contains(v.CompatibleArchitectures, arch) {
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// layerCounter is the durable per-layer record that hands out version
// numbers; it outlives the versions, so numbers are never reused.
type layerCounter struct {
	NextVersion int64 `json:"NextVersion"`
}

// LayerSummary is one entry of ListLayers.
type LayerSummary struct {
	LayerName string
	LayerArn  string
	Latest    *LayerVersion
}

// LayerARN is the unversioned ARN of a layer.
func LayerARN(region, account, name string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":layer:" + name
}

func layerKey(acct, name string) string { return acct + "." + name }
func layerVersionKey(acct, name string, v int64) string {
	return acct + "." + name + "." + strconv.FormatInt(v, 10)
}

// parseLayerName accepts a layer name or an unversioned layer ARN and
// returns the account it names ("" for a bare name) and the name.
func parseLayerName(s string) (acct, name string, err error) {
	if m := layerArnRe.FindStringSubmatch(s); m != nil && len(s) <= MaxLayerName {
		return m[2], m[3], nil
	}
	if len(s) >= 1 && len(s) <= MaxLayerName && layerNameRe.MatchString(s) {
		return "", s, nil
	}
	return "", "", validation("1 validation error detected: Value '%s' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", s, layerNamePattern)
}

func denied(callerAcct, arn string) *Error {
	return errf("AccessDeniedException", 403, "User: arn:aws:iam::%s:root is not authorized to perform: lambda:GetLayerVersion on resource: %s because no resource-based policy allows the lambda:GetLayerVersion action (the layer's owner grants it with AddLayerVersionPermission)", callerAcct, arn)
}

// layerRef resolves the account and name of a layer name or ARN given by
// the caller; another account's layer is denied (no layer permissions).
func (s *Service) layerRef(acct, region, nameOrArn string) (string, error) {
	a, name, err := parseLayerName(nameOrArn)
	if err != nil {
		return "", err
	}
	if a != "" && a != acct {
		return "", denied(acct, nameOrArn)
	}
	return name, nil
}

func parseVersionNumber(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, validation("1 validation error detected: Value '%s' at 'versionNumber' failed to satisfy constraint: Member must be a positive integer", s)
	}
	return n, nil
}

func validateLayerMeta(in *PublishLayerInput) error {
	if len(in.Description) > MaxDescription {
		return validation("1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to %d", MaxDescription)
	}
	if len(in.LicenseInfo) > MaxLicenseInfo {
		return validation("1 validation error detected: Value at 'licenseInfo' failed to satisfy constraint: Member must have length less than or equal to %d", MaxLicenseInfo)
	}
	if len(in.CompatibleRuntimes) > MaxCompatibleRuntimes {
		return validation("1 validation error detected: Value '%v' at 'compatibleRuntimes' failed to satisfy constraint: Member must have length less than or equal to %d", in.CompatibleRuntimes, MaxCompatibleRuntimes)
	}
	for _, r := range in.CompatibleRuntimes {
		if !runtimeIDRe.MatchString(r) {
			return validation("1 validation error detected: Value '%v' at 'compatibleRuntimes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [python3.11, nodejs20.x, provided.al2023, ...]]", in.CompatibleRuntimes)
		}
	}
	if len(in.CompatibleArchitectures) > MaxCompatibleArchitectures {
		return validation("1 validation error detected: Value '%v' at 'compatibleArchitectures' failed to satisfy constraint: Member must have length less than or equal to %d", in.CompatibleArchitectures, MaxCompatibleArchitectures)
	}
	for _, a := range in.CompatibleArchitectures {
		if a != "x86_64" && a != "arm64" {
			return validation("1 validation error detected: Value '%v' at 'compatibleArchitectures' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]", in.CompatibleArchitectures)
		}
	}
	return nil
}

// PublishLayerVersion stores a new version of a layer (creating the layer).
func (s *Service) PublishLayerVersion(ctx context.Context, acct, region, nameOrArn string, in *PublishLayerInput) (*LayerVersion, error) {
	name, err := s.layerRef(acct, region, nameOrArn)
	if err != nil {
		return nil, err
	}
	if in.Content == nil {
		return nil, invalidParam("Content is required: upload the layer with ZipFile (aws lambda publish-layer-version --zip-file fileb://layer.zip)")
	}
	if in.Content.S3Bucket != nil || in.Content.S3Key != nil || in.Content.S3ObjectVersion != nil {
		return nil, invalidParam("S3 content locations (S3Bucket/S3Key) are not supported by lambdaplane; upload the layer directly with ZipFile (--zip-file fileb://layer.zip)")
	}
	zip := in.Content.ZipFile
	if len(zip) == 0 {
		return nil, invalidParam("Content is required: upload the layer with ZipFile (aws lambda publish-layer-version --zip-file fileb://layer.zip)")
	}
	if err := validateLayerMeta(in); err != nil {
		return nil, err
	}
	if int64(len(zip)) > s.o.CodeLimits.MaxZipped {
		return nil, errf("RequestEntityTooLargeException", 413, "Request must be smaller than %d bytes for the PublishLayerVersion operation", s.o.CodeLimits.MaxZipped)
	}
	info, err := codepkg.Inspect(zip, s.o.CodeLimits)
	if err != nil {
		return nil, invalidParam("Could not unzip uploaded file. Please check your file, then try to upload again. (%v)", err)
	}
	key := hexSha(zip)
	b := blob{blobLayer, key}
	if err := s.checkSpace(ctx, b, uint64(len(zip)), uint64(info.Unzipped), "layer"); err != nil {
		return nil, err
	}
	defer s.pin(true, b)() // until the version naming it is written
	if _, err := s.layerObjs.GetInfo(ctx, key); err != nil {
		if _, err := s.layerObjs.PutBytes(ctx, key, zip); err != nil {
			return nil, s.storageError(err, "store the layer content")
		}
	}
	if _, err := s.layerContent(ctx, key, zip); err != nil {
		return nil, s.storageError(err, "unpack the layer content")
	}
	n, err := s.nextLayerVersion(ctx, acct, name)
	if err != nil {
		return nil, err
	}
	v := &LayerVersion{
		AccountID: acct, Region: region, LayerName: name, Version: n,
		Description: in.Description, LicenseInfo: in.LicenseInfo,
		CompatibleRuntimes: in.CompatibleRuntimes, CompatibleArchitectures: in.CompatibleArchitectures,
		CodeSha256: info.Sha256, CodeSize: info.Size, Unzipped: info.Unzipped, Key: key,
		Created: s.o.Now().UTC(),
	}
	if _, err := s.layerVersions.Create(ctx, layerVersionKey(acct, name, n), v); err != nil {
		return nil, err
	}
	s.log.Info("layer version published", "account", acct, "layer", name, "version", n, "codeSize", info.Size)
	return v, nil
}

// nextLayerVersion hands out the next version number of a layer.
func (s *Service) nextLayerVersion(ctx context.Context, acct, name string) (int64, error) {
	k := layerKey(acct, name)
	for {
		if _, err := s.layerCounters.Create(ctx, k, &layerCounter{NextVersion: 2}); err == nil {
			return 1, nil
		} else if !errors.Is(err, store.ErrExists) {
			return 0, err
		}
		var n int64
		_, _, err := s.layerCounters.Update(ctx, k, func(c *layerCounter) error {
			n = c.NextVersion
			c.NextVersion++
			return nil
		})
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		return n, err
	}
}

// getLayerVersion reads one version; nil when it does not exist.
func (s *Service) getLayerVersion(ctx context.Context, acct, name string, n int64) (*LayerVersion, error) {
	v, _, err := s.layerVersions.Get(ctx, layerVersionKey(acct, name, n))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// GetLayerVersion returns one version of one of the caller's layers.
func (s *Service) GetLayerVersion(ctx context.Context, acct, region, nameOrArn, version string) (*LayerVersion, error) {
	owner, name, err := parseLayerName(nameOrArn)
	if err != nil {
		return nil, err
	}
	if owner == "" {
		owner = acct
	}
	n, err := parseVersionNumber(version)
	if err != nil {
		return nil, err
	}
	v, err := s.getLayerVersion(ctx, owner, name, n)
	if err != nil {
		return nil, err
	}
	if owner != acct && (v == nil || !s.layerGranted(ctx, acct, v)) {
		return nil, denied(acct, nameOrArn+":"+version) // another account's layer: only as its policy allows
	}
	if v == nil {
		return nil, notFound("The resource you requested does not exist.")
	}
	return v, nil
}

// GetLayerVersionByArn returns the layer version an ARN names.
func (s *Service) GetLayerVersionByArn(ctx context.Context, acct, region, arn string) (*LayerVersion, error) {
	m := layerVersionArnRe.FindStringSubmatch(arn)
	if m == nil || len(arn) > MaxLayerName {
		return nil, validation("1 validation error detected: Value '%s' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", arn, layerArnPattern)
	}
	n, err := parseVersionNumber(m[4])
	if err != nil {
		return nil, err
	}
	v, err := s.getLayerVersion(ctx, m[2], m[3], n)
	if err != nil {
		return nil, err
	}
	if m[2] != acct && (v == nil || !s.layerGranted(ctx, acct, v)) {
		return nil, denied(acct, arn) // another account's layer: only as its policy allows
	}
	if v == nil || v.Region != m[1] {
		return nil, notFound("The resource you requested does not exist.")
	}
	return v, nil
}

// allLayerVersions lists the caller's layer versions, by name then version.
func (s *Service) allLayerVersions(ctx context.Context, acct, name string) ([]*LayerVersion, error) {
	filter := acct + ".>"
	if name != "" {
		filter = acct + "." + name + ".*"
	}
	entries, err := s.layerVersions.List(ctx, filter)
	if err != nil {
		return nil, err
	}
	out := make([]*LayerVersion, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Value)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].LayerName != out[j].LayerName {
			return out[i].LayerName < out[j].LayerName
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

func checkLayerFilters(runtime, arch string) error {
	if runtime != "" && !runtimeIDRe.MatchString(runtime) {
		return validation("1 validation error detected: Value '%s' at 'compatibleRuntime' failed to satisfy constraint: Member must satisfy enum value set", runtime)
	}
	if arch != "" && arch != "x86_64" && arch != "arm64" {
		return validation("1 validation error detected: Value '%s' at 'compatibleArchitecture' failed to satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]", arch)
	}
	return nil
}

// ListLayers lists the caller's layers with the newest version matching
// the filters; layers without a matching version are left out.
func (s *Service) ListLayers(ctx context.Context, acct, region, runtime, arch, marker string, maxItems int) ([]LayerSummary, string, error) {
	if err := checkMaxItems(maxItems); err != nil {
		return nil, "", err
	}
	if err := checkLayerFilters(runtime, arch); err != nil {
		return nil, "", err
	}
	if maxItems == 0 {
		maxItems = 50
	}
	all, err := s.allLayerVersions(ctx, acct, "")
	if err != nil {
		return nil, "", err
	}
	var out []LayerSummary
	for _, v := range all { // ascending versions: the last match wins
		if !v.matches(runtime, arch) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].LayerName == v.LayerName {
			out[n-1].Latest = v
			continue
		}
		out = append(out, LayerSummary{LayerName: v.LayerName, LayerArn: v.LayerARN(), Latest: v})
	}
	return page(out, marker, maxItems, func(l LayerSummary) string { return l.LayerName })
}

// ListLayerVersions lists the versions of one layer, newest first. A layer
// without versions lists nothing (as Lambda).
func (s *Service) ListLayerVersions(ctx context.Context, acct, region, nameOrArn, runtime, arch, marker string, maxItems int) ([]*LayerVersion, string, error) {
	name, err := s.layerRef(acct, region, nameOrArn)
	if err != nil {
		return nil, "", err
	}
	if err := checkMaxItems(maxItems); err != nil {
		return nil, "", err
	}
	if err := checkLayerFilters(runtime, arch); err != nil {
		return nil, "", err
	}
	if maxItems == 0 {
		maxItems = 50
	}
	all, err := s.allLayerVersions(ctx, acct, name)
	if err != nil {
		return nil, "", err
	}
	var out []*LayerVersion
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].matches(runtime, arch) {
			out = append(out, all[i])
		}
	}
	return page(out, marker, maxItems, func(v *LayerVersion) string { return strconv.FormatInt(v.Version, 10) })
}

// DeleteLayerVersion deletes a version's record; its number is never handed
// out again. Its content stays while a function's $LATEST or version uses
// it (they keep working, as on AWS) and is freed once none does. Deleting a
// missing version succeeds (as Lambda).
func (s *Service) DeleteLayerVersion(ctx context.Context, acct, region, nameOrArn, version string) error {
	name, err := s.layerRef(acct, region, nameOrArn)
	if err != nil {
		return err
	}
	n, err := parseVersionNumber(version)
	if err != nil {
		return err
	}
	held, err := s.getLayerVersion(ctx, acct, name, n)
	if err != nil {
		return err
	}
	if err := s.layerVersions.Delete(ctx, layerVersionKey(acct, name, n)); err != nil {
		return err
	}
	if held != nil {
		s.sweep(ctx, []blob{{blobLayer, held.Key}})
	}
	s.log.Info("layer version deleted", "account", acct, "layer", name, "version", n)
	return nil
}

// resolveLayers validates a function's Layers list and returns the
// references to store in its configuration.
func (s *Service) resolveLayers(ctx context.Context, acct, region string, arns []string) ([]LayerRef, error) {
	if len(arns) > MaxLayers {
		return nil, validation("1 validation error detected: Value '[%s]' at 'layers' failed to satisfy constraint: Member must have length less than or equal to %d", strings.Join(arns, ", "), MaxLayers)
	}
	out := make([]LayerRef, 0, len(arns))
	seen := map[string]string{}
	for _, arn := range arns {
		m := layerVersionArnRe.FindStringSubmatch(arn)
		if m == nil || len(arn) > MaxLayerName {
			return nil, validation("1 validation error detected: Value '[%s]' at 'layers' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 140, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: %s]", strings.Join(arns, ", "), layerArnPattern)
		}
		layer := m[1] + ":" + m[3]
		if prev, ok := seen[layer]; ok {
			return nil, invalidParam("Two different versions of the same layer are not allowed to be referenced in the same function. %s and %s reference the same layer.", prev, arn)
		}
		seen[layer] = arn
		n, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil || n < 1 {
			return nil, invalidParam("Layer version %s does not exist.", arn)
		}
		v, err := s.getLayerVersion(ctx, m[2], m[3], n)
		if err != nil {
			return nil, err
		}
		if m[2] != acct && (v == nil || !s.layerGranted(ctx, acct, v)) {
			return nil, denied(acct, arn) // another account's layer: only as its policy allows
		}
		if v == nil || v.Region != m[1] {
			return nil, invalidParam("Layer version %s does not exist.", arn)
		}
		out = append(out, LayerRef{Arn: v.ARN(), CodeSize: v.CodeSize, Key: v.Key, Unzipped: v.Unzipped})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// checkUnzippedTotal enforces the 250 MB limit on a function's code and
// layers together.
func (s *Service) checkUnzippedTotal(code int64, refs []LayerRef) error {
	total := code
	for _, l := range refs {
		total += l.Unzipped
	}
	if total > s.o.CodeLimits.MaxUnzipped {
		return invalidParam("Function code combined with layers exceeds the maximum allowed size of %d bytes. The actual size is %d bytes.", s.o.CodeLimits.MaxUnzipped, total)
	}
	return nil
}

// layerContent returns the directory holding a layer's unpacked content,
// unpacking it (from zip, or from the object store when zip is nil) if this
// host does not have it yet.
func (s *Service) layerContent(ctx context.Context, key string, zip []byte) (string, error) {
	dir := filepath.Join(s.o.DataDir, "layers", "content", key)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	s.extractMu.Lock()
	defer s.extractMu.Unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if zip == nil {
		var err error
		if zip, err = s.layerObjs.GetBytes(ctx, key); err != nil {
			return "", fmt.Errorf("read layer content %s: %w", key, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if _, err := codepkg.Extract(zip, dir, s.o.CodeLimits); err != nil {
		return "", unpackError(err, "layer content "+key)
	}
	return dir, nil
}

// OptDir returns the host directory to mount at /opt for cfg: "" without
// layers, the unpacked layer for one, and for several the merged tree of
// the ordered list (built once per host and list, atomically).
func (s *Service) OptDir(ctx context.Context, cfg *Config) (string, error) {
	switch len(cfg.Layers) {
	case 0:
		return "", nil
	case 1:
		return s.layerContent(ctx, cfg.Layers[0].Key, nil)
	}
	keys := make([]string, len(cfg.Layers))
	for i, l := range cfg.Layers {
		keys[i] = l.Key
	}
	dest := filepath.Join(s.o.DataDir, "layers", "merged", layers.MergedName(keys))
	if _, err := os.Stat(dest); err == nil {
		return dest, nil
	}
	srcs := make([]string, len(keys))
	for i, k := range keys {
		d, err := s.layerContent(ctx, k, nil)
		if err != nil {
			return "", err
		}
		srcs[i] = d
	}
	s.mergeMu.Lock()
	defer s.mergeMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	if err := layers.Merge(srcs, dest); err != nil {
		return "", err
	}
	return dest, nil
}
