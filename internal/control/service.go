package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/codepkg"
	"github.com/lambdaplane/lambdaplane/internal/diskspace"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// RuntimeChecker reports whether this host can serve a runtime identifier;
// its error names the identifier and the available ones.
type RuntimeChecker func(id string) error

// Options configures a Service.
type Options struct {
	Store        *store.Store
	DataDir      string // code packages are extracted under DataDir/code
	Runtimes     RuntimeChecker
	AccountLimit int // account concurrency, default 1000
	CodeLimits   codepkg.Limits
	// MinFreeDisk is the free space to keep on DataDir's filesystem: an
	// upload (CreateFunction, UpdateFunctionCode, PublishLayerVersion)
	// that would leave less is refused with CodeStorageExceededException.
	// The zero value is diskspace's default (10 %, at most 512 MiB).
	MinFreeDisk diskspace.Watermark
	Logger      *slog.Logger
	Now         func() time.Time
	// OnChange is called (possibly from a watch goroutine) whenever a
	// function's records change, so the invoke layer can retire environments.
	OnChange func(account, name string)

	// Roles checks execution roles (exists, trusts Lambda, VPC permissions);
	// nil skips the checks (unit tests).
	Roles RoleChecker
	// Vpcs validates VpcConfig subnets and security groups; Networks holds
	// the functions' Hyperplane ENI shares. Without them VpcConfig is refused.
	Vpcs     VpcLookup
	Networks Networks
	// VpcIdleTimeout makes a VPC function not invoked for this long
	// Inactive (its ENI shares released). Default 14 days.
	VpcIdleTimeout time.Duration
	// SettleTimeout bounds one attempt to set up a function's ENIs (90 s).
	SettleTimeout time.Duration
	// Authorize checks the caller of ctx (an IAM user) against its identity
	// policies for the operations authorized with a condition context
	// (CreateFunction, UpdateFunctionConfiguration: lambda:VpcIds,
	// lambda:SubnetIds, lambda:SecurityGroupIds). nil allows everything.
	Authorize func(ctx context.Context, action, resource string, cond map[string][]string) error
}

// Service is the function control plane.
type Service struct {
	o        Options
	log      *slog.Logger
	fns      *store.Table[Function]
	versions *store.Table[Config]
	aliases  *store.Table[Alias]
	code     jetstream.ObjectStore
	cache    *cache
	stop     context.CancelFunc

	layerCounters *store.Table[layerCounter]
	layerVersions *store.Table[LayerVersion]
	layerObjs     jetstream.ObjectStore

	extractMu sync.Mutex
	mergeMu   sync.Mutex
	gc        *codeGC

	net netState

	access *accessState // resource policies, layer policies, function URLs (policy.go, urls.go)
	prov   *provState   // provisioned concurrency configurations (provisioned.go)
	// classic: function settings and code signing configs (classic.go)
	classic *classicState
}

// New opens the function buckets and loads the cache.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.AccountLimit == 0 {
		o.AccountLimit = 1000
	}
	d := codepkg.DefaultLimits()
	if o.CodeLimits.MaxZipped <= 0 {
		o.CodeLimits.MaxZipped = d.MaxZipped
	}
	if o.CodeLimits.MaxUnzipped <= 0 {
		o.CodeLimits.MaxUnzipped = d.MaxUnzipped
	}
	if o.CodeLimits.MaxFiles <= 0 {
		o.CodeLimits.MaxFiles = d.MaxFiles
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{o: o, log: o.Logger, cache: newCache(o.OnChange), gc: newCodeGC()}
	var err error
	if s.fns, err = store.NewTable[Function](ctx, o.Store, "functions"); err != nil {
		return nil, err
	}
	if s.versions, err = store.NewTable[Config](ctx, o.Store, "versions"); err != nil {
		return nil, err
	}
	if s.aliases, err = store.NewTable[Alias](ctx, o.Store, "aliases"); err != nil {
		return nil, err
	}
	if s.code, err = o.Store.Objects(ctx, "code"); err != nil {
		return nil, err
	}
	if s.layerCounters, err = store.NewTable[layerCounter](ctx, o.Store, "layers"); err != nil {
		return nil, err
	}
	if s.layerVersions, err = store.NewTable[LayerVersion](ctx, o.Store, "layerversions"); err != nil {
		return nil, err
	}
	if s.layerObjs, err = o.Store.Objects(ctx, "layercontent"); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if err := watch(wctx, s.fns.KV(), track(&s.cache.applied[0], s.cache.putFn)); err != nil {
		cancel()
		return nil, err
	}
	if err := watch(wctx, s.versions.KV(), track(&s.cache.applied[1], s.cache.putVersion)); err != nil {
		cancel()
		return nil, err
	}
	if err := watch(wctx, s.aliases.KV(), track(&s.cache.applied[2], s.cache.putAlias)); err != nil {
		cancel()
		return nil, err
	}
	if err := s.openProvisioned(ctx, wctx); err != nil {
		cancel()
		return nil, err
	}
	if err := s.openClassic(ctx, wctx); err != nil {
		cancel()
		return nil, err
	}
	if err := s.openAccess(ctx, wctx); err != nil {
		cancel()
		return nil, err
	}
	s.startNetwork()
	// Free what no record names: code of functions deleted while the
	// server was down or before their code was freed, interrupted
	// extractions (nothing extracts yet).
	s.sweepAll(ctx, true)
	s.gc.wg.Add(1)
	go s.sweepLoop()
	return s, nil
}

// Close stops the background work and the watches.
func (s *Service) Close() {
	close(s.gc.stop)
	s.gc.wg.Wait()
	s.stopNetwork()
	s.stop()
}

// AccountLimit is the account concurrency limit.
func (s *Service) AccountLimit() int { return s.o.AccountLimit }

func fnKey(acct, name string) string           { return acct + "." + name }
func versionKey(acct, name, v string) string   { return acct + "." + name + "." + v }
func aliasKey(acct, name, alias string) string { return acct + "." + name + "." + alias }

func newRevision() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// refInAccount checks that a parsed ref belongs to the caller.
func refInAccount(r Ref, acct, region string) error {
	if r.AccountID != "" && r.AccountID != acct {
		return notFound("Function not found: %s", QualifiedARN(region, r.AccountID, r.Name, r.Qualifier))
	}
	return nil
}

func (s *Service) checkCode(c *CodeInput) error {
	if c == nil {
		return invalidParam("Code is required: upload the package with ZipFile (aws lambda create-function --zip-file fileb://function.zip)")
	}
	if c.S3Bucket != nil || c.S3Key != nil || c.S3ObjectVersion != nil {
		return invalidParam("S3 code locations (S3Bucket/S3Key) are not supported by lambdaplane; upload the package directly with ZipFile (--zip-file fileb://function.zip)")
	}
	if c.ImageUri != nil {
		return invalidParam("Container images (ImageUri) are not supported by lambdaplane; use PackageType Zip with ZipFile")
	}
	if len(c.ZipFile) == 0 {
		return invalidParam("Code is required: upload the package with ZipFile (aws lambda create-function --zip-file fileb://function.zip)")
	}
	return nil
}

// storeCode validates a zip package, keeps it in the object store and
// extracts it; it returns the package facts and a pin that keeps the
// package from being freed until the record naming it is written: call
// unpin once it is (or the operation failed, which frees the package).
func (s *Service) storeCode(ctx context.Context, zip []byte) (_ codepkg.Info, key string, unpin func(), err error) {
	if int64(len(zip)) > s.o.CodeLimits.MaxZipped {
		return codepkg.Info{}, "", nil, errf("RequestEntityTooLargeException", 413, "Request must be smaller than %d bytes for the CreateFunction operation", s.o.CodeLimits.MaxZipped)
	}
	info, err := codepkg.Inspect(zip, s.o.CodeLimits)
	if err != nil {
		return info, "", nil, invalidParam("Could not unzip uploaded file. Please check your file, then try to upload again. (%v)", err)
	}
	key = hexSha(zip)
	b := blob{blobCode, key}
	if err := s.checkSpace(ctx, b, uint64(len(zip)), uint64(info.Unzipped), "code package"); err != nil {
		return info, "", nil, err
	}
	// The deferred release is of this pin, not of the result unpin: a
	// failing return sets that to nil before deferred calls run.
	release := s.pin(true, b)
	defer func() {
		if err != nil {
			release()
		}
	}()
	if _, err := s.code.GetInfo(ctx, key); err != nil {
		if _, err := s.code.PutBytes(ctx, key, zip); err != nil {
			return info, "", nil, s.storageError(err, "store the code package")
		}
	}
	if _, err := s.extract(ctx, key, zip); err != nil {
		return info, "", nil, s.storageError(err, "unpack the code package")
	}
	return info, key, release, nil
}

// CodeDir returns the directory holding the extracted package of cfg,
// extracting it from the object store if this host does not have it yet.
func (s *Service) CodeDir(ctx context.Context, cfg *Config) (string, error) {
	return s.extract(ctx, cfg.CodeKey, nil)
}

func (s *Service) extract(ctx context.Context, key string, zip []byte) (string, error) {
	dir := filepath.Join(s.o.DataDir, "code", key)
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
		zip, err = s.code.GetBytes(ctx, key)
		if err != nil {
			return "", fmt.Errorf("read code package %s: %w", key, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if _, err := codepkg.Extract(zip, dir, s.o.CodeLimits); err != nil {
		return "", unpackError(err, "code package "+key)
	}
	return dir, nil
}

// CreateFunction validates and stores a new function.
func (s *Service) CreateFunction(ctx context.Context, acct, region string, in *CreateInput) (*Config, error) {
	if err := validateName(in.FunctionName); err != nil {
		return nil, err
	}
	if in.Role == "" {
		return nil, invalidParam("Role is required: pass --role arn:aws:iam::%s:role/NAME", acct)
	}
	if err := validateRole(in.Role); err != nil {
		return nil, err
	}
	if in.PackageType != "" && in.PackageType != "Zip" {
		return nil, invalidParam("PackageType %q is not supported by lambdaplane; use Zip", in.PackageType)
	}
	if in.Runtime == "" {
		return nil, invalidParam("Runtime is required for .zip deployment packages; available runtimes: see GetAccountSettings or the README")
	}
	if s.o.Runtimes != nil {
		if err := s.o.Runtimes(in.Runtime); err != nil {
			return nil, invalidParam("%v", err)
		}
	}
	if in.KMSKeyArn != "" {
		return nil, invalidParam("KMSKeyArn is not supported by lambdaplane; omit it (environment variables are stored in the platform's own store)")
	}
	var deadLetter string
	if in.DeadLetterConfig != nil {
		deadLetter = in.DeadLetterConfig.TargetArn
		if err := checkDeadLetterArn(deadLetter); err != nil {
			return nil, err
		}
	}
	cfg := Config{
		FunctionName: in.FunctionName, AccountID: acct, Region: region,
		Runtime: in.Runtime, Role: in.Role, Handler: in.Handler, Description: in.Description,
		Timeout: DefaultTimeout, MemorySize: DefaultMemory, EphemeralStorage: DefaultEphemeral,
		Architectures: []string{"x86_64"}, Version: LatestVersion, PackageType: "Zip",
		DeadLetterArn: deadLetter,
	}
	if in.Timeout != nil {
		cfg.Timeout = *in.Timeout
	}
	if in.MemorySize != nil {
		cfg.MemorySize = *in.MemorySize
	}
	if in.EphemeralStorage != nil {
		cfg.EphemeralStorage = in.EphemeralStorage.Size
	}
	if in.Environment != nil && len(in.Environment.Variables) > 0 {
		cfg.Environment = in.Environment.Variables
	}
	if err := applyLogging(&cfg, in.LoggingConfig); err != nil {
		return nil, err
	}
	if err := ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	if err := s.validateConfig(&cfg); err != nil {
		return nil, err
	}
	if err := validateArchitectures(in.Architectures); err != nil {
		return nil, err
	}
	vpcCfg, err := s.resolveVpc(ctx, acct, in.VpcConfig)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, "lambda:CreateFunction", FunctionARN(region, acct, in.FunctionName), vpcCfg, TagConditions(in.Tags)); err != nil {
		return nil, err
	}
	if err := s.checkRole(ctx, acct, in.Role, vpcCfg != nil); err != nil {
		return nil, err
	}
	if err := s.checkDeadLetterRole(ctx, acct, in.Role, deadLetter); err != nil {
		return nil, err
	}
	layerRefs, err := s.resolveLayers(ctx, acct, region, in.Layers)
	if err != nil {
		return nil, err
	}
	if err := s.checkCode(in.Code); err != nil {
		return nil, err
	}
	if s.cache.fn(fnKey(acct, in.FunctionName)) != nil {
		return nil, conflict("Function already exist: %s", in.FunctionName)
	}
	info, key, unpin, err := s.storeCode(ctx, in.Code.ZipFile)
	if err != nil {
		return nil, err
	}
	defer unpin() // after the record is written (or the create failed: freed)
	if err := s.checkUnzippedTotal(info.Unzipped, layerRefs); err != nil {
		return nil, err
	}
	now := s.o.Now().UTC()
	cfg.CodeSha256, cfg.CodeSize, cfg.CodeKey, cfg.CodeUnzipped = info.Sha256, info.Size, key, info.Unzipped
	cfg.Layers = layerRefs
	cfg.LastModified = now
	cfg.RevisionID = newRevision()
	cfg.State, cfg.LastUpdateStatus = StateActive, UpdateSuccessful
	if vpcCfg != nil {
		vpcCfg.NetUser = netUser(region, acct, in.FunctionName, now, vpcCfg)
		cfg.VpcConfig = vpcCfg
		setPending(&cfg, ReasonCreating, "The function is being created.")
	}
	fn := &Function{Latest: cfg, NextVersion: 1, Created: now, Tags: in.Tags}
	if len(fn.Tags) == 0 {
		fn.Tags = nil
	}
	rev, err := s.fns.Create(ctx, fnKey(acct, in.FunctionName), fn)
	if errors.Is(err, store.ErrExists) {
		return nil, conflict("Function already exist: %s", in.FunctionName)
	}
	if err != nil {
		return nil, err
	}
	s.cache.putFn(fnKey(acct, in.FunctionName), fn, rev)
	s.log.Info("function created", "account", acct, "function", in.FunctionName, "runtime", cfg.Runtime, "codeSize", cfg.CodeSize)
	if vpcCfg != nil {
		s.kick(acct, in.FunctionName)
	}
	if in.Publish {
		v, err := s.publishVersion(ctx, acct, region, in.FunctionName, "", "", "", true)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	return &cfg, nil
}

func (s *Service) validateConfig(c *Config) error {
	if err := validateRange("timeout", c.Timeout, MinTimeout, MaxTimeout); err != nil {
		return err
	}
	if err := validateRange("memorySize", c.MemorySize, MinMemory, MaxMemory); err != nil {
		return err
	}
	if err := validateRange("ephemeralStorage.size", c.EphemeralStorage, MinEphemeral, MaxEphemeral); err != nil {
		return err
	}
	if err := validateHandler(c.Handler); err != nil {
		return err
	}
	if err := validateDescription(c.Description); err != nil {
		return err
	}
	return validateEnv(c.Environment)
}

// lookup returns the function record from the cache or ResourceNotFound.
func (s *Service) lookup(acct, region, name string) (*Function, error) {
	fn := s.cache.fn(fnKey(acct, name))
	if fn == nil {
		return nil, notFound("Function not found: %s", FunctionARN(region, acct, name))
	}
	return fn, nil
}

// GetFunction returns the configuration for ref (with qualifier) and the record.
func (s *Service) GetFunction(ctx context.Context, acct, region, name, qualifier string) (*Config, *Function, error) {
	r, err := ParseRef(name)
	if err != nil {
		return nil, nil, err
	}
	if err := refInAccount(r, acct, region); err != nil {
		return nil, nil, err
	}
	if qualifier == "" {
		qualifier = r.Qualifier
	} else if r.Qualifier != "" && r.Qualifier != qualifier {
		return nil, nil, invalidParam("The derived qualifier from the function name does not match the specified qualifier.")
	}
	cfg, _, err := s.resolve(acct, region, r.Name, qualifier)
	if err != nil {
		return nil, nil, err
	}
	fn, _ := s.lookup(acct, region, r.Name)
	return cfg, fn, nil
}

// Resolve maps an invoke target (name/ARN, optional qualifier) to the
// configuration to run and the version it runs as. It costs no store round
// trip.
func (s *Service) Resolve(acct, region, name, qualifier string) (*Config, error) {
	r, err := ParseRef(name)
	if err != nil {
		return nil, err
	}
	if err := refInAccount(r, acct, region); err != nil {
		return nil, err
	}
	if qualifier == "" {
		qualifier = r.Qualifier
	} else if r.Qualifier != "" && r.Qualifier != qualifier {
		return nil, invalidParam("The derived qualifier from the function name does not match the specified qualifier.")
	}
	cfg, _, err := s.resolve(acct, region, r.Name, qualifier)
	return cfg, err
}

// Exists reports whether the function exists (a cache lookup).
func (s *Service) Exists(acct, name string) bool {
	return s.cache.fn(fnKey(acct, name)) != nil
}

// Reserved returns the function's reserved concurrency (nil = unreserved).
func (s *Service) Reserved(acct, name string) *int {
	if fn := s.cache.fn(fnKey(acct, name)); fn != nil {
		return fn.ReservedConcurrency
	}
	return nil
}

func (s *Service) resolve(acct, region, name, qualifier string) (*Config, string, error) {
	fn, err := s.lookup(acct, region, name)
	if err != nil {
		return nil, "", err
	}
	switch {
	case qualifier == "" || qualifier == LatestVersion:
		c := fn.Latest
		return &c, LatestVersion, nil
	case versionRe.MatchString(qualifier):
		v := s.cache.version(versionKey(acct, name, qualifier))
		if v == nil {
			return nil, "", notFound("Function not found: %s", QualifiedARN(region, acct, name, qualifier))
		}
		c := *v
		// A version's state is its function's (VPC setup and idle reclaim
		// are per function).
		c.State, c.StateReason, c.StateReasonCode = fn.Latest.State, fn.Latest.StateReason, fn.Latest.StateReasonCode
		return &c, qualifier, nil
	default:
		a := s.cache.alias(aliasKey(acct, name, qualifier))
		if a == nil {
			return nil, "", notFound("Function not found: %s", QualifiedARN(region, acct, name, qualifier))
		}
		return s.resolve(acct, region, name, a.FunctionVersion)
	}
}

// ListFunctions pages through the account's functions ($LATEST; with all,
// every published version too).
func (s *Service) ListFunctions(ctx context.Context, acct, marker string, maxItems int, all bool) ([]Config, string, error) {
	if err := checkMaxItems(maxItems); err != nil {
		return nil, "", err
	}
	if maxItems == 0 {
		maxItems = 50
	}
	s.cache.mu.RLock()
	var names []string
	for k, c := range s.cache.fns {
		if c.v != nil && c.v.Latest.AccountID == acct {
			names = append(names, k)
		}
	}
	s.cache.mu.RUnlock()
	sort.Strings(names)
	var out []Config
	for _, k := range names {
		fn := s.cache.fn(k)
		if fn == nil {
			continue
		}
		out = append(out, fn.Latest)
		if all {
			vs, _ := s.versionsOf(acct, fn.Latest.FunctionName)
			out = append(out, vs...)
		}
	}
	return page(out, marker, maxItems, func(c Config) string { return c.FunctionName + ":" + c.Version })
}

func checkMaxItems(n int) error {
	if n < 0 || n > 10000 {
		return validation("1 validation error detected: Value '%d' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000", n)
	}
	return nil
}

// page cuts a sorted list at an opaque marker (the id of the last item
// returned before).
func page[T any](items []T, marker string, maxItems int, id func(T) string) ([]T, string, error) {
	start := 0
	if marker != "" {
		start = -1
		for i, it := range items {
			if id(it) == marker {
				start = i + 1
				break
			}
		}
		if start < 0 {
			return nil, "", invalidParam("Invalid marker %q: pass the NextMarker of the previous response", marker)
		}
	}
	end := start + maxItems
	if end >= len(items) {
		return items[start:], "", nil
	}
	return items[start:end], id(items[end-1]), nil
}

func (s *Service) versionsOf(acct, name string) ([]Config, error) {
	prefix := acct + "." + name + "."
	s.cache.mu.RLock()
	var out []Config
	for k, c := range s.cache.versions {
		if c.v != nil && len(k) > len(prefix) && k[:len(prefix)] == prefix {
			out = append(out, *c.v)
		}
	}
	s.cache.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(out[i].Version)
		b, _ := strconv.Atoi(out[j].Version)
		return a < b
	})
	return out, nil
}

// ListVersions lists $LATEST and the published versions.
func (s *Service) ListVersions(ctx context.Context, acct, region, name, marker string, maxItems int) ([]Config, string, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, "", err
	}
	if err := checkMaxItems(maxItems); err != nil {
		return nil, "", err
	}
	if maxItems == 0 {
		maxItems = 50
	}
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return nil, "", err
	}
	vs, _ := s.versionsOf(acct, r.Name)
	all := append([]Config{fn.Latest}, vs...)
	return page(all, marker, maxItems, func(c Config) string { return c.Version })
}

func (s *Service) parseUnqualified(acct, region, name string) (Ref, error) {
	r, err := ParseRef(name)
	if err != nil {
		return r, err
	}
	if err := refInAccount(r, acct, region); err != nil {
		return r, err
	}
	return r, nil
}

// updateLatest applies fn to $LATEST under a RevisionId precondition; apply
// also gets the function's creation time (its incarnation: netUser).
func (s *Service) updateLatest(ctx context.Context, acct, region, name, revisionID string, apply func(c *Config, created time.Time) error) (*Config, error) {
	if _, err := s.lookup(acct, region, name); err != nil {
		return nil, err
	}
	var out Config
	fn, rev, err := s.fns.Update(ctx, fnKey(acct, name), func(f *Function) error {
		if revisionID != "" && revisionID != f.Latest.RevisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		if f.Latest.LastUpdateStatus == UpdateInProgress {
			return conflict("The operation cannot be performed at this time. An update is in progress for resource: %s", FunctionARN(region, acct, name))
		}
		c := f.Latest
		if c.LastUpdateStatus != UpdateInProgress {
			c.LastUpdateStatus, c.LastUpdateStatusReason, c.LastUpdateStatusReasonCode = UpdateSuccessful, "", ""
		}
		if err := apply(&c, f.Created); err != nil {
			return err
		}
		c.LastModified = s.o.Now().UTC()
		c.RevisionID = newRevision()
		f.Latest = c
		out = c
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("Function not found: %s", FunctionARN(region, acct, name))
	}
	if err != nil {
		return nil, err
	}
	s.cache.putFn(fnKey(acct, name), fn, rev)
	return &out, nil
}

// UpdateCode replaces $LATEST's code package.
func (s *Service) UpdateCode(ctx context.Context, acct, region, name string, in *UpdateCodeInput) (*Config, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	if err := s.checkCode(&CodeInput{ZipFile: in.ZipFile, S3Bucket: in.S3Bucket, S3Key: in.S3Key, S3ObjectVersion: in.S3ObjectVersion, ImageUri: in.ImageUri}); err != nil {
		return nil, err
	}
	if err := validateArchitectures(in.Architectures); err != nil {
		return nil, err
	}
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return nil, err
	}
	if in.RevisionId != "" && in.RevisionId != fn.Latest.RevisionID {
		return nil, preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
	}
	if in.DryRun {
		info, err := codepkg.Inspect(in.ZipFile, s.o.CodeLimits)
		if err != nil {
			return nil, invalidParam("Could not unzip uploaded file. Please check your file, then try to upload again. (%v)", err)
		}
		c := fn.Latest
		c.CodeSha256, c.CodeSize = info.Sha256, info.Size
		return &c, nil
	}
	info, key, unpin, err := s.storeCode(ctx, in.ZipFile)
	if err != nil {
		return nil, err
	}
	defer unpin()
	var old string
	cfg, err := s.updateLatest(ctx, acct, region, r.Name, in.RevisionId, func(c *Config, _ time.Time) error {
		if err := s.checkUnzippedTotal(info.Unzipped, c.Layers); err != nil {
			return err
		}
		old = c.CodeKey
		c.CodeSha256, c.CodeSize, c.CodeKey, c.CodeUnzipped = info.Sha256, info.Size, key, info.Unzipped
		return nil
	})
	if err != nil {
		return nil, err
	}
	if old != key { // the replaced package, unless a version keeps it
		s.sweep(ctx, []blob{{blobCode, old}})
	}
	if in.Publish {
		return s.PublishVersion(ctx, acct, region, r.Name, "", "", "")
	}
	return cfg, nil
}

// UpdateConfig changes $LATEST's configuration.
func (s *Service) UpdateConfig(ctx context.Context, acct, region, name string, in *UpdateConfigInput) (*Config, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	if in.Role != nil {
		if err := validateRole(*in.Role); err != nil {
			return nil, err
		}
	}
	if in.Runtime != nil && s.o.Runtimes != nil {
		if err := s.o.Runtimes(*in.Runtime); err != nil {
			return nil, invalidParam("%v", err)
		}
	}
	if in.DeadLetterConfig != nil && in.DeadLetterConfig.TargetArn != nil {
		if err := checkDeadLetterArn(*in.DeadLetterConfig.TargetArn); err != nil {
			return nil, err
		}
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return nil, err
	}
	// What the request asks is resolved here; what it changes is decided
	// in the update below, against the record it writes (the cache may be
	// behind another writer's update).
	var asked *VpcConfig // the request's VpcConfig: its condition keys
	if in.VpcConfig != nil {
		if asked, err = s.resolveVpc(ctx, acct, in.VpcConfig); err != nil {
			return nil, err
		}
	}
	if err := s.authorize(ctx, "lambda:UpdateFunctionConfiguration", FunctionARN(region, acct, r.Name), asked); err != nil {
		return nil, err
	}
	var layerRefs []LayerRef
	if in.Layers != nil { // [] detaches every layer
		if layerRefs, err = s.resolveLayers(ctx, acct, region, in.Layers); err != nil {
			return nil, err
		}
	}
	vpcChanged := false
	var dropped []blob // the layers replaced, unless something else uses them
	out, err := s.updateLatest(ctx, acct, region, r.Name, in.RevisionId, func(c *Config, created time.Time) error {
		if in.Layers != nil {
			if err := s.checkUnzippedTotal(c.CodeUnzipped, layerRefs); err != nil {
				return err
			}
			dropped = blobsOf(&Config{Layers: c.Layers})
			c.Layers = layerRefs
		}
		if in.Role != nil {
			c.Role = *in.Role
		}
		if in.Handler != nil {
			c.Handler = *in.Handler
		}
		if in.Description != nil {
			c.Description = *in.Description
		}
		if in.Timeout != nil {
			c.Timeout = *in.Timeout
		}
		if in.MemorySize != nil {
			c.MemorySize = *in.MemorySize
		}
		if in.Runtime != nil {
			c.Runtime = *in.Runtime
		}
		if in.Environment != nil {
			c.Environment = in.Environment.Variables
			if len(c.Environment) == 0 {
				c.Environment = nil
			}
		}
		if in.EphemeralStorage != nil {
			c.EphemeralStorage = in.EphemeralStorage.Size
		}
		if err := applyLogging(c, in.LoggingConfig); err != nil {
			return err
		}
		var want *VpcConfig
		if asked != nil {
			a := *asked
			a.NetUser = netUser(region, acct, r.Name, created, &a)
			want = &a
		}
		vpcChanged = in.VpcConfig != nil && netUserOf(want) != netUserOf(c.VpcConfig)
		if vpcChanged {
			c.VpcConfig = want
			if want != nil {
				setUpdating(c, "The function is being updated.")
			}
		}
		if in.Role != nil || vpcChanged {
			if err := s.checkRole(ctx, acct, c.Role, c.VpcConfig != nil); err != nil {
				return err
			}
		}
		if in.DeadLetterConfig != nil {
			c.DeadLetterArn = ""
			if in.DeadLetterConfig.TargetArn != nil {
				c.DeadLetterArn = *in.DeadLetterConfig.TargetArn
			}
		}
		if in.Role != nil || in.DeadLetterConfig != nil {
			if err := s.checkDeadLetterRole(ctx, acct, c.Role, c.DeadLetterArn); err != nil {
				return err
			}
		}
		return s.validateConfig(c)
	})
	if err == nil && vpcChanged {
		s.kick(acct, r.Name)
	}
	if err == nil {
		s.sweep(ctx, dropped)
	}
	return out, err
}

// PublishVersion snapshots $LATEST as the next version number. Publishing
// an unchanged $LATEST returns the newest version instead (as Lambda does).
func (s *Service) PublishVersion(ctx context.Context, acct, region, name, codeSha, desc, revisionID string) (*Config, error) {
	return s.publishVersion(ctx, acct, region, name, codeSha, desc, revisionID, false)
}

// publishVersion publishes; during creates the function may still be
// setting up its VPC access (duringCreate).
func (s *Service) publishVersion(ctx context.Context, acct, region, name, codeSha, desc, revisionID string, duringCreate bool) (*Config, error) {
	if region == "" {
		region = "us-east-1"
	}
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	name = r.Name
	if _, err := s.lookup(acct, region, name); err != nil {
		return nil, err
	}
	var last *Config
	if vs, _ := s.versionsOf(acct, name); len(vs) > 0 {
		last = &vs[len(vs)-1]
	}
	// Every check is made against the record the version is taken from.
	var v Config
	nf, rev, err := s.fns.Update(ctx, fnKey(acct, name), func(f *Function) error {
		if revisionID != "" && revisionID != f.Latest.RevisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		if !duringCreate && (f.Latest.State == StatePending || f.Latest.LastUpdateStatus == UpdateInProgress) {
			return conflict("The operation cannot be performed at this time. The function is being set up (%s); publish after it is Active.", f.Latest.StateReasonCode)
		}
		if codeSha != "" && codeSha != f.Latest.CodeSha256 {
			return invalidParam("CodeSHA256 (%s) is different from current CodeSHA256 in $LATEST (%s). Please try again with the CodeSHA256 in $LATEST.", codeSha, f.Latest.CodeSha256)
		}
		if last != nil && sameCode(last, &f.Latest) && (desc == "" || desc == last.VersionDesc) {
			return errUnchanged
		}
		v = f.Latest
		v.Version = strconv.Itoa(f.NextVersion)
		f.NextVersion++
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return last, nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("Function not found: %s", FunctionARN(region, acct, name))
	}
	if err != nil {
		return nil, err
	}
	v.RevisionID = newRevision()
	v.LastModified = s.o.Now().UTC()
	if desc != "" {
		v.Description = desc
	}
	v.VersionDesc = desc
	vrev, err := s.versions.Create(ctx, versionKey(acct, name, v.Version), &v)
	if err != nil {
		return nil, err
	}
	s.cache.putFn(fnKey(acct, name), nf, rev)
	s.cache.putVersion(versionKey(acct, name, v.Version), &v, vrev)
	return &v, nil
}

// errUnchanged: publishing would snapshot what the newest version holds.
var errUnchanged = errors.New("unchanged since the newest version")

// sameCode reports whether a published version equals $LATEST in everything
// a publish would snapshot.
func sameCode(v, latest *Config) bool {
	a, b := *v, *latest
	a.Version, b.Version = "", ""
	a.RevisionID, b.RevisionID = "", ""
	a.LastModified, b.LastModified = time.Time{}, time.Time{}
	a.VersionDesc, b.VersionDesc = "", ""
	a.Description, b.Description = "", ""
	return fmt.Sprint(a) == fmt.Sprint(b) && bytes.Equal([]byte(a.CodeSha256), []byte(b.CodeSha256))
}

// DeleteFunction deletes a whole function or, with a qualifier, one version.
func (s *Service) DeleteFunction(ctx context.Context, acct, region, name, qualifier string) error {
	r, err := ParseRef(name)
	if err != nil {
		return err
	}
	if err := refInAccount(r, acct, region); err != nil {
		return err
	}
	if qualifier == "" {
		qualifier = r.Qualifier
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return err
	}
	if qualifier != "" && qualifier != LatestVersion {
		if !versionRe.MatchString(qualifier) {
			return invalidParam("Deletion of aliases is not currently supported through DeleteFunction; use DeleteAlias for %q", qualifier)
		}
		if s.cache.version(versionKey(acct, r.Name, qualifier)) == nil {
			return notFound("Function not found: %s", QualifiedARN(region, acct, r.Name, qualifier))
		}
		aliases, _, _ := s.ListAliases(ctx, acct, region, r.Name, qualifier, "", 10000)
		if len(aliases) > 0 {
			return conflict("Unable to delete version because the following aliases reference it: [%s]", aliases[0].Name)
		}
		held := s.cache.version(versionKey(acct, r.Name, qualifier))
		if err := s.versions.Delete(ctx, versionKey(acct, r.Name, qualifier)); err != nil {
			return err
		}
		s.cache.putVersion(versionKey(acct, r.Name, qualifier), nil, 0)
		s.forgetAccess(ctx, acct, r.Name, qualifier)
		if held != nil {
			s.sweep(ctx, blobsOf(held))
		}
		if held != nil && held.VpcConfig != nil {
			s.kick(acct, r.Name) // its ENI share goes unless another configuration has it
		}
		return nil
	}
	if qualifier == LatestVersion {
		return invalidParam("$LATEST version cannot be deleted without deleting the function.")
	}
	aliases, _, _ := s.ListAliases(ctx, acct, region, r.Name, "", "", 10000)
	for _, a := range aliases {
		k := aliasKey(acct, r.Name, a.Name)
		if err := s.aliases.Delete(ctx, k); err != nil {
			return err
		}
		s.cache.putAlias(k, nil, 0)
	}
	vs, _ := s.versionsOf(acct, r.Name)
	var code []blob // what the function ran: freed unless something else uses it
	for _, v := range vs {
		k := versionKey(acct, r.Name, v.Version)
		if err := s.versions.Delete(ctx, k); err != nil {
			return err
		}
		s.cache.putVersion(k, nil, 0)
		code = append(code, blobsOf(&v)...)
	}
	held := s.cache.fn(fnKey(acct, r.Name))
	if err := s.fns.Delete(ctx, fnKey(acct, r.Name)); err != nil {
		return err
	}
	s.cache.putFn(fnKey(acct, r.Name), nil, 0)
	s.forgetUse(acct, r.Name)
	s.forgetAccess(ctx, acct, r.Name, "")
	if held != nil {
		s.releaseShares(ctx, acct, held.NetUsers, nil)
		code = append(code, blobsOf(&held.Latest)...)
	}
	s.sweep(ctx, code)
	s.log.Info("function deleted", "account", acct, "function", r.Name)
	return nil
}

// FunctionCount and TotalCodeSize of an account (GetAccountSettings).
func (s *Service) usage(acct string) (count int, codeSize int64, reserved int) {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	for _, c := range s.cache.fns {
		if c.v != nil && c.v.Latest.AccountID == acct {
			count++
			codeSize += c.v.Latest.CodeSize
			if c.v.ReservedConcurrency != nil {
				reserved += *c.v.ReservedConcurrency
			}
		}
	}
	for _, c := range s.cache.versions {
		if c.v != nil && c.v.AccountID == acct {
			codeSize += c.v.CodeSize
		}
	}
	return
}

// AccountSettings is GetAccountSettings' answer.
type AccountSettings struct {
	AccountLimit struct {
		TotalCodeSize                  int64 `json:"TotalCodeSize"`
		CodeSizeUnzipped               int64 `json:"CodeSizeUnzipped"`
		CodeSizeZipped                 int64 `json:"CodeSizeZipped"`
		ConcurrentExecutions           int   `json:"ConcurrentExecutions"`
		UnreservedConcurrentExecutions int   `json:"UnreservedConcurrentExecutions"`
	} `json:"AccountLimit"`
	AccountUsage struct {
		TotalCodeSize int64 `json:"TotalCodeSize"`
		FunctionCount int   `json:"FunctionCount"`
	} `json:"AccountUsage"`
}

// GetAccountSettings reports limits and usage.
func (s *Service) GetAccountSettings(acct string) *AccountSettings {
	n, size, reserved := s.usage(acct)
	var a AccountSettings
	a.AccountLimit.TotalCodeSize = 80530636800
	a.AccountLimit.CodeSizeUnzipped = s.o.CodeLimits.MaxUnzipped
	a.AccountLimit.CodeSizeZipped = s.o.CodeLimits.MaxZipped
	a.AccountLimit.ConcurrentExecutions = s.o.AccountLimit
	provUnreserved, _ := s.provisionedTotals(acct)
	a.AccountLimit.UnreservedConcurrentExecutions = s.o.AccountLimit - reserved - provUnreserved
	a.AccountUsage.TotalCodeSize = size
	a.AccountUsage.FunctionCount = n
	return &a
}

// minUnreserved is the part of the account limit reservations must leave.
func (s *Service) minUnreserved() int {
	if s.o.AccountLimit/10 < 100 {
		return s.o.AccountLimit / 10
	}
	return 100
}

// PutConcurrency sets reserved concurrency.
func (s *Service) PutConcurrency(ctx context.Context, acct, region, name string, n *int) (int, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return 0, err
	}
	if r.Qualifier != "" {
		return 0, invalidParam("Reserved concurrency applies to the whole function; pass the function name without a qualifier")
	}
	if n == nil {
		return 0, invalidParam("ReservedConcurrentExecutions is required")
	}
	if *n < 0 {
		return 0, validation("1 validation error detected: Value '%d' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0", *n)
	}
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return 0, err
	}
	_, _, reserved := s.usage(acct)
	if fn.ReservedConcurrency != nil {
		reserved -= *fn.ReservedConcurrency
	}
	if s.o.AccountLimit-reserved-*n < s.minUnreserved() {
		return 0, invalidParam("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", s.minUnreserved())
	}
	v := *n
	nf, rev, err := s.fns.Update(ctx, fnKey(acct, r.Name), func(f *Function) error { f.ReservedConcurrency = &v; return nil })
	if err != nil {
		return 0, err
	}
	s.cache.putFn(fnKey(acct, r.Name), nf, rev)
	return v, nil
}

// DeleteConcurrency removes reserved concurrency.
func (s *Service) DeleteConcurrency(ctx context.Context, acct, region, name string) error {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return err
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return err
	}
	nf, rev, err := s.fns.Update(ctx, fnKey(acct, r.Name), func(f *Function) error { f.ReservedConcurrency = nil; return nil })
	if err != nil {
		return err
	}
	s.cache.putFn(fnKey(acct, r.Name), nf, rev)
	return nil
}

// GetConcurrency returns reserved concurrency (nil = none).
func (s *Service) GetConcurrency(acct, region, name string) (*int, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	fn, err := s.lookup(acct, region, r.Name)
	if err != nil {
		return nil, err
	}
	return fn.ReservedConcurrency, nil
}
