package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/lambdaplane/lambdaplane/internal/diskspace"
	"github.com/lambdaplane/lambdaplane/internal/server"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of size bytes for the test (unmounted after
// the servers using it are closed: cleanups run last first).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fillTo writes path until the filesystem is full.
func fillTo(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !diskspace.IsNoSpace(err) {
				t.Fatal(err)
			}
			return
		}
	}
}

func freeBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	u, err := diskspace.Of(dir)
	if err != nil {
		t.Fatal(err)
	}
	return u.Free
}

// apiError returns the Lambda error code and HTTP status of err.
func apiError(err error) (string, int) {
	var ae smithy.APIError
	var st interface{ HTTPStatusCode() int }
	code, status := "", 0
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	if errors.As(err, &st) {
		status = st.HTTPStatusCode()
	}
	return code, status
}

// noRetry is a Lambda client of e that does not retry (a 500 is seen once).
func noRetry(e *env) *lambda.Client {
	k := e.srv.Account.Keys[0]
	return lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(e.srv.Endpoint), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider(k.ID, k.Secret, ""),
	})
}

// padZip is a package of n incompressible bytes (a different one each call).
func padZip(t *testing.T, n int) []byte {
	t.Helper()
	pad := make([]byte, n)
	_, _ = rand.Read(pad)
	z, err := zipFiles(map[string]zipEntry{"bootstrap": {Data: pad, Mode: 0o755}})
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func codeTrees(t *testing.T, data string) []string {
	t.Helper()
	trees, _ := filepath.Glob(filepath.Join(data, "code", "*"))
	return trees
}

// TestDiskFullAndBack: a data directory on a 64 MB tmpfs. Uploads are
// refused with CodeStorageExceededException (400, naming the free space and
// --min-free-disk) before the store runs out; deleting functions frees
// their code (unpacked trees and stored objects: the free space returns)
// and uploads work again. Then the disk is filled to the last byte by
// something else: a write the store cannot make is a 500 ServiceException,
// never a client error; once space returns every operation works again
// without a restart (a stalled store is restarted). Finally a server
// restarts on a full disk, serves, and uploads work once space returns.
func TestDiskFullAndBack(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	data := mountTmpfs(t, 64<<20)
	withData := func(c *server.Config) { c.DataDir = data }
	e := startServer(t, withData)
	ctx := context.Background()
	c := noRetry(e)

	e.createProbe("probe")
	if m, _ := e.invokeJSON("probe", map[string]any{"name": "disk"}); m == nil {
		t.Fatal("probe answered nothing")
	}
	create := func(name string, zip []byte) error {
		_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(name), Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
			Role: aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/probe"), Code: &types.FunctionCode{ZipFile: zip},
		})
		return err
	}
	del := func(name string) {
		t.Helper()
		if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}

	// 1. Uploads until the watermark refuses one.
	freeBefore := freeBytes(t, data)
	var fills []string
	var refusal error
	for i := 0; i < 20 && refusal == nil; i++ {
		name := fmt.Sprintf("fill-%d", i)
		if err := create(name, padZip(t, 4<<20)); err != nil {
			refusal = err
		} else {
			fills = append(fills, name)
		}
	}
	code, status := apiError(refusal)
	if code != "CodeStorageExceededException" || status != 400 || !strings.Contains(refusal.Error(), "--min-free-disk") || !strings.Contains(refusal.Error(), "free of") {
		t.Fatalf("upload on a nearly full disk: %s %d: %v", code, status, refusal)
	}
	if len(fills) < 2 {
		t.Fatalf("only %d uploads of 4 MiB fitted on 64 MB", len(fills))
	}
	t.Logf("%d uploads of 4 MiB, then: %v", len(fills), refusal)
	if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("probe"), ZipFile: padZip(t, 4<<20)}); func() bool { c, s := apiError(err); return c != "CodeStorageExceededException" || s != 400 }() {
		t.Fatalf("UpdateFunctionCode on a nearly full disk: %v", err)
	}
	if _, err := c.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("l"), Content: &types.LayerVersionContentInput{ZipFile: padZip(t, 4<<20)}}); func() bool { c, s := apiError(err); return c != "CodeStorageExceededException" || s != 400 }() {
		t.Fatalf("PublishLayerVersion on a nearly full disk: %v", err)
	}
	if n := len(codeTrees(t, data)); n != 1+len(fills) {
		t.Fatalf("%d unpacked trees, want %d (probe and the fills; refused uploads leave none)", n, 1+len(fills))
	}

	// 2. Deleting frees the code: unpacked trees and stored objects.
	for _, n := range fills {
		del(n)
	}
	if trees := codeTrees(t, data); len(trees) != 1 {
		t.Fatalf("unpacked trees after deleting the fills: %v", trees)
	}
	// The trees go at once; JetStream reclaims a deleted object's disk
	// lazily: a block file goes once all its messages are deleted, an older
	// one is compacted once less than half of it is live, the newest (at
	// most 8 MiB) only once it is older. Before, nothing came back.
	if got := freeBytes(t, data); got+(9<<20) < freeBefore {
		t.Fatalf("free space %d after deleting every fill, %d before them: their code was not freed", got, freeBefore)
	}
	if err := create("after-deletes", padZip(t, 4<<20)); err != nil {
		t.Fatalf("upload after deletes: %v", err)
	}
	del("after-deletes")

	// 3. Something else fills the disk to the last byte.
	filler := filepath.Join(data, "filler")
	fillTo(t, filler)
	if err := create("on-full", padZip(t, 1<<20)); func() bool { c, s := apiError(err); return c != "CodeStorageExceededException" || s != 400 }() {
		t.Fatalf("upload on a full disk: %v", err)
	}
	// Writes the store must make: events of 512 KB, configuration updates.
	payload := []byte(`{"pad":"` + strings.Repeat("x", 512<<10) + `"}`)
	failed := 0
	for i := 0; i < 8; i++ {
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), InvocationType: types.InvocationTypeEvent, Payload: payload})
		if err == nil {
			_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("probe"), Description: aws.String(fmt.Sprint("full ", i))})
		}
		if err != nil {
			failed++
			if code, status := apiError(err); status != 500 || code != "ServiceException" {
				t.Fatalf("a write the store could not make: %s %d (want ServiceException 500): %v", code, status, err)
			}
		}
	}
	t.Logf("%d of 8 write rounds failed on the full disk", failed)
	if failed == 0 {
		t.Fatal("every write succeeded on a full disk")
	}

	// 4. Space returns: everything works again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var last error
	eventually(t, 90*time.Second, "writes to work again after space returned", func() bool {
		_, last = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("probe"), Description: aws.String("space again")})
		if last == nil {
			_, last = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)})
		}
		return last == nil
	})
	if err := create("back", padZip(t, 1<<20)); err != nil {
		t.Fatalf("upload once space returned: %v", err)
	}
	// An Event invoke runs and its log is stored.
	marker := "after-full-" + randHex(8)
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"print":"` + marker + `"}`)}); err != nil {
		t.Fatalf("Event invoke once space returned: %v", err)
	}
	eventually(t, 90*time.Second, "the Event invoke's log", func() bool { return strings.Contains(e.storedLog(e.srv.Account.ID, "probe"), marker) })
	e.invokeJSON("probe", map[string]any{"name": "back"})
	del("back")
	mf := scrape(t, e)
	t.Logf("store restarts: %v", metricValue(mf, "lambdaplane_store_restarts_total", nil))

	// 5. A restart on a full disk starts and serves.
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	fillTo(t, filler)
	e2 := startServer(t, withData)
	c2 := noRetry(e2)
	if _, err := c2.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("probe")}); err != nil {
		t.Fatalf("GetFunction after a restart on a full disk: %v", err)
	}
	_, err := c2.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("on-full-restart"), Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
		Role: aws.String("arn:aws:iam::" + e2.srv.Account.ID + ":role/probe"), Code: &types.FunctionCode{ZipFile: padZip(t, 1<<20)},
	})
	if code, status := apiError(err); code != "CodeStorageExceededException" || status != 400 {
		t.Fatalf("upload after a restart on a full disk: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "uploads to work once space returned", func() bool {
		_, err = c2.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String("after-restart"), Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
			Role: aws.String("arn:aws:iam::" + e2.srv.Account.ID + ":role/probe"), Code: &types.FunctionCode{ZipFile: padZip(t, 1<<20)},
		})
		return err == nil
	})
	e2.invokeJSON("probe", map[string]any{"name": "restarted"})
}

// TestCodeFreedOnDelete: deleting a function removes its unpacked tree and
// stored object unless a version an alias holds still runs that code; a
// warm environment of a deleted function keeps its tree until it goes.
func TestCodeFreedOnDelete(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	zipA, zipB := padZip(t, 1<<20), padZip(t, 1<<20)
	keyOf := func(name string) string {
		out, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		// Code.Location is the presigned download URL; its key is the code key.
		u, err := url.Parse(aws.ToString(out.Code.Location))
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("key")
	}
	exists := func(key string) bool {
		_, err := os.Stat(filepath.Join(e.data, "code", key))
		return err == nil
	}
	e.createProbe("v", func(in *lambda.CreateFunctionInput) { in.Code.ZipFile = zipA })
	a := keyOf("v")
	if _, err := e.lambda.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lambda.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("v"), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("v"), ZipFile: zipB}); err != nil {
		t.Fatal(err)
	}
	b := keyOf("v")
	if !exists(a) || !exists(b) {
		t.Fatalf("trees: version 1's %v, $LATEST's %v; want both", exists(a), exists(b))
	}
	if _, err := e.lambda.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("v"), Name: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("v"), Qualifier: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	if exists(a) {
		t.Fatal("the deleted version's tree is still there")
	}

	// An environment running the code keeps it until the environment goes.
	busyZip, err := withExtraFile(probeZip, "extra", randHex(16))
	if err != nil {
		t.Fatal(err)
	}
	e.createProbe("busy", func(in *lambda.CreateFunctionInput) { in.Code.ZipFile = busyZip })
	k := keyOf("busy")
	done := make(chan error, 1)
	go func() {
		_, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("busy"), Payload: []byte(`{"action":"sleep","sleepMs":8000}`)})
		done <- err
	}()
	eventually(t, 30*time.Second, "the invocation to run", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the invocation ended early: %v", err)
		default:
		}
		st := e.srv.Scheduler().Stats()
		return st.Environments >= 1 && st.Environments > st.Idle
	})
	if _, err := e.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("busy")}); err != nil {
		t.Fatal(err)
	}
	if !exists(k) {
		t.Fatal("the tree of a function deleted while it runs went before its environment")
	}
	if err := <-done; err != nil {
		t.Fatalf("the invocation running while its function was deleted: %v", err)
	}
	eventually(t, 30*time.Second, "the tree to go with the environment", func() bool { return !exists(k) })

	if _, err := e.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("v")}); err != nil {
		t.Fatal(err)
	}
	if exists(b) {
		t.Fatal("the deleted function's tree is still there")
	}
	if trees := codeTrees(t, e.data); len(trees) != 0 {
		t.Fatalf("trees left after every function was deleted: %v", trees)
	}
}

// withExtraFile returns z with one more file.
func withExtraFile(z []byte, name, content string) ([]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		if err := zw.Copy(f); err != nil {
			return nil, err
		}
	}
	w, err := zw.Create(name)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write([]byte(content)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
