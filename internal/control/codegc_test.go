package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/codepkg"
	"github.com/lambdaplane/lambdaplane/internal/diskspace"
	"github.com/lambdaplane/lambdaplane/internal/layers"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// kept reports whether b is unpacked on disk and (code, layers) stored.
func kept(t *testing.T, s *Service, b blob) (dir, object bool) {
	t.Helper()
	_, err := os.Stat(s.blobDir(b))
	dir = err == nil
	if obs, _ := s.blobStore(b); obs != nil {
		_, err := obs.GetInfo(context.Background(), b.key)
		object = err == nil
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			t.Fatal(err)
		}
	}
	return dir, object
}

func mustKeep(t *testing.T, s *Service, b blob, what string) {
	t.Helper()
	dir, obj := kept(t, s, b)
	if !dir || (b.kind != blobMerged && !obj) {
		t.Fatalf("%s: unpacked %v, stored %v; want both kept", what, dir, obj)
	}
}

func mustFree(t *testing.T, s *Service, b blob, what string) {
	t.Helper()
	if dir, obj := kept(t, s, b); dir || obj {
		t.Fatalf("%s: unpacked %v, stored %v; want both freed", what, dir, obj)
	}
}

func createFn(t *testing.T, s *Service, name, body string, layerARNs ...string) *Config {
	t.Helper()
	cfg, err := s.CreateFunction(context.Background(), testAcct, testRegion, &CreateInput{
		FunctionName: name, Runtime: "python3.11", Role: "arn:aws:iam::123456789012:role/r", Handler: "app.handler",
		Code: fnCode(t, body), Layers: layerARNs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCodeFreedWhenNothingUsesIt: a package stays while $LATEST, a
// published version (one an alias holds included) or another function
// uses it, and goes — unpacked tree and stored object — with the last.
func TestCodeFreedWhenNothingUsesIt(t *testing.T) {
	s := newTestService(t, codepkg.Limits{})
	ctx := context.Background()
	x := blob{blobCode, createFn(t, s, "a", "x").CodeKey}
	v1, err := s.PublishVersion(ctx, testAcct, testRegion, "a", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	one := "1"
	if _, err := s.CreateAlias(ctx, testAcct, testRegion, "a", &AliasInput{Name: "live", FunctionVersion: &one}); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.UpdateCode(ctx, testAcct, testRegion, "a", &UpdateCodeInput{ZipFile: fnCode(t, "y").ZipFile})
	if err != nil {
		t.Fatal(err)
	}
	y := blob{blobCode, cfg.CodeKey}
	mustKeep(t, s, x, "code of version 1 (alias live) after $LATEST moved on")
	if got := createFn(t, s, "b", "y").CodeKey; got != y.key {
		t.Fatalf("same zip, different key %s %s", got, y.key)
	}
	if err := s.DeleteAlias(ctx, testAcct, testRegion, "a", "live"); err != nil {
		t.Fatal(err)
	}
	mustKeep(t, s, x, "code of version 1 after its alias went")
	if err := s.DeleteFunction(ctx, testAcct, testRegion, "a", v1.Version); err != nil {
		t.Fatal(err)
	}
	mustFree(t, s, x, "code of deleted version 1")
	if err := s.DeleteFunction(ctx, testAcct, testRegion, "a", ""); err != nil {
		t.Fatal(err)
	}
	mustKeep(t, s, y, "code function b still uses")
	// Updating to other code frees the replaced package.
	if _, err := s.UpdateCode(ctx, testAcct, testRegion, "b", &UpdateCodeInput{ZipFile: fnCode(t, "z").ZipFile}); err != nil {
		t.Fatal(err)
	}
	mustFree(t, s, y, "code replaced by UpdateFunctionCode")
	// A whole function with versions: every version's code goes.
	c := createFn(t, s, "c", "c1")
	if _, err := s.PublishVersion(ctx, testAcct, testRegion, "c", "", "", ""); err != nil {
		t.Fatal(err)
	}
	c2, err := s.UpdateCode(ctx, testAcct, testRegion, "c", &UpdateCodeInput{ZipFile: fnCode(t, "c2").ZipFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, testAcct, testRegion, "c", ""); err != nil {
		t.Fatal(err)
	}
	mustFree(t, s, blob{blobCode, c.CodeKey}, "code of a deleted function's version")
	mustFree(t, s, blob{blobCode, c2.CodeKey}, "code of a deleted function's $LATEST")
}

// TestLeaseDefersFree: code a live environment runs stays until the
// environment releases it, however its function changed meanwhile.
func TestLeaseDefersFree(t *testing.T) {
	s := newTestService(t, codepkg.Limits{})
	ctx := context.Background()
	cfg := createFn(t, s, "f", "leased")
	b := blob{blobCode, cfg.CodeKey}
	release := s.Lease(cfg)
	if _, err := s.CodeDir(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, testAcct, testRegion, "f", ""); err != nil {
		t.Fatal(err)
	}
	mustKeep(t, s, b, "code a live environment runs")
	release()
	mustFree(t, s, b, "code after the last environment released it")
	release() // idempotent
}

// TestLayerContentFreed: a layer version's content stays while the version
// or a function that uses it exists; merged /opt trees go with the last
// function that uses them.
func TestLayerContentFreed(t *testing.T) {
	s := newTestService(t, codepkg.Limits{})
	ctx := context.Background()
	l1 := publish(t, s, testAcct, "one", map[string]string{"a": "1"})
	l2 := publish(t, s, testAcct, "two", map[string]string{"b": "2"})
	k1, k2 := blob{blobLayer, l1.Key}, blob{blobLayer, l2.Key}
	merged := blob{blobMerged, layers.MergedName([]string{l1.Key, l2.Key})}
	cfg := createFn(t, s, "f", "code", l1.ARN(), l2.ARN())
	if _, err := s.OptDir(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	mustKeep(t, s, merged, "merged /opt tree")
	if err := s.DeleteLayerVersion(ctx, testAcct, testRegion, "one", "1"); err != nil {
		t.Fatal(err)
	}
	mustKeep(t, s, k1, "deleted layer version a function uses")
	// Detaching the layers frees the deleted version's content and the merged tree.
	if _, err := s.UpdateConfig(ctx, testAcct, testRegion, "f", &UpdateConfigInput{Layers: []string{l2.ARN()}}); err != nil {
		t.Fatal(err)
	}
	mustFree(t, s, k1, "content of a deleted layer version no function uses")
	mustFree(t, s, merged, "merged tree no function uses")
	if err := s.DeleteFunction(ctx, testAcct, testRegion, "f", ""); err != nil {
		t.Fatal(err)
	}
	mustKeep(t, s, k2, "content of a layer version that still exists")
	if err := s.DeleteLayerVersion(ctx, testAcct, testRegion, "two", "1"); err != nil {
		t.Fatal(err)
	}
	mustFree(t, s, k2, "content of a deleted layer version")
}

// TestFailedCreateFreesCode: a package stored by a create that then failed
// is freed.
func TestFailedCreateFreesCode(t *testing.T) {
	s := newTestService(t, codepkg.Limits{MaxUnzipped: 1000})
	l := publish(t, s, testAcct, "big", map[string]string{"x": strings.Repeat("l", 900)})
	body := strings.Repeat("c", 200)
	_, err := s.CreateFunction(context.Background(), testAcct, testRegion, &CreateInput{
		FunctionName: "f", Runtime: "python3.11", Role: "arn:aws:iam::123456789012:role/r", Handler: "app.handler",
		Code: fnCode(t, body), Layers: []string{l.ARN()},
	})
	if errCode(err) != "InvalidParameterValueException" {
		t.Fatalf("create over the size limit: %v", err)
	}
	mustFree(t, s, blob{blobCode, hexSha(fnCode(t, body).ZipFile)}, "code of a failed create")
}

// TestStartSweep: a service starting frees unpacked trees and objects no
// record names and interrupted extractions, and keeps what records name.
func TestStartSweep(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(ctx, Options{Store: st, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg := createFn(t, s, "f", "kept")
	stray := blob{blobCode, strings.Repeat("ab", 32)}
	if err := os.MkdirAll(filepath.Join(s.blobDir(stray), "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "code", cfg.CodeKey+".tmp-123")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	orphan := blob{blobLayer, strings.Repeat("cd", 32)}
	if _, err := s.layerObjs.PutBytes(ctx, orphan.key, testZip(t, map[string]string{"o": "o"})); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = New(ctx, Options{Store: st, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustFree(t, s, stray, "an unpacked tree no record names")
	mustFree(t, s, orphan, "a stored layer content no record names")
	if _, err := os.Stat(tmp); err == nil {
		t.Error("an interrupted extraction was left")
	}
	mustKeep(t, s, blob{blobCode, cfg.CodeKey}, "code of an existing function")
}

// TestMinFreeDisk: below the watermark an upload is refused with
// CodeStorageExceededException naming the free space and the flag; nothing
// is stored.
func TestMinFreeDisk(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, _ := diskspace.Parse("100%")
	s, err := New(ctx, Options{Store: st, DataDir: dir, MinFreeDisk: all})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.CreateFunction(ctx, testAcct, testRegion, &CreateInput{
		FunctionName: "f", Runtime: "python3.11", Role: "arn:aws:iam::123456789012:role/r", Handler: "app.handler",
		Code: fnCode(t, "x"),
	})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != "CodeStorageExceededException" || ce.Status != 400 ||
		!strings.Contains(ce.Message, "--min-free-disk") || !strings.Contains(ce.Message, "free of") {
		t.Fatalf("create below the watermark: %v", err)
	}
	in := &PublishLayerInput{}
	in.Content = &struct {
		ZipFile             []byte  `json:"ZipFile"`
		S3Bucket            *string `json:"S3Bucket"`
		S3Key               *string `json:"S3Key"`
		S3ObjectVersion     *string `json:"S3ObjectVersion"`
		S3ObjectStorageMode *string `json:"S3ObjectStorageMode"`
	}{ZipFile: testZip(t, map[string]string{"l": "l"})}
	if _, err := s.PublishLayerVersion(ctx, testAcct, testRegion, "l", in); errCode(err) != "CodeStorageExceededException" {
		t.Fatalf("layer below the watermark: %v", err)
	}
	mustFree(t, s, blob{blobCode, hexSha(fnCode(t, "x").ZipFile)}, "a refused upload")
}

// TestCacheForgetsDeleted: once the watch delivered a delete, the cache
// keeps nothing of the record.
func TestCacheForgetsDeleted(t *testing.T) {
	s := newTestService(t, codepkg.Limits{})
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		createFn(t, s, n, n)
		if _, err := s.PublishVersion(ctx, testAcct, testRegion, n, "", "", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteFunction(ctx, testAcct, testRegion, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	createFn(t, s, "kept", "kept")
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.cache.mu.RLock()
		fns, versions := len(s.cache.fns), len(s.cache.versions)
		s.cache.mu.RUnlock()
		if fns == 1 && versions == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache holds %d functions and %d versions, want 1 and 0", fns, versions)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !s.Exists(testAcct, "kept") || s.Exists(testAcct, "a") {
		t.Fatal("Exists wrong")
	}
	// A function created again under a deleted name is there.
	createFn(t, s, "a", "again")
	if !s.Exists(testAcct, "a") {
		t.Fatal("function created again is missing")
	}
}

// TestPurgeDeleteMarkers: old delete markers leave the record buckets; live
// records stay and the cache is unaffected.
func TestPurgeDeleteMarkers(t *testing.T) {
	s := newTestService(t, codepkg.Limits{})
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		createFn(t, s, n, n)
		if err := s.DeleteFunction(ctx, testAcct, testRegion, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	createFn(t, s, "kept", "kept")
	msgs := func() uint64 {
		st, err := s.fns.KV().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Values()
	}
	if n := msgs(); n != 4 {
		t.Fatalf("functions bucket holds %d messages before, want 4 (3 markers)", n)
	}
	s.purgeDeleteMarkers(ctx, time.Hour) // recent ones stay
	if n := msgs(); n != 4 {
		t.Fatalf("recent markers purged: %d messages", n)
	}
	s.purgeDeleteMarkers(ctx, -1)
	if n := msgs(); n != 1 {
		t.Fatalf("functions bucket holds %d messages after, want 1", n)
	}
	if !s.Exists(testAcct, "kept") || s.Exists(testAcct, "a") {
		t.Fatal("cache changed by the purge")
	}
}
