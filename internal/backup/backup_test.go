package backup

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// fill writes records, an object and a work queue with a consumer that
// acknowledged part of it.
func fill(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	fns, err := store.NewTable[map[string]string](ctx, st, "functions")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if _, err := fns.Put(ctx, fmt.Sprintf("fn.%02d", i), &map[string]string{"name": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	code, err := st.Objects(ctx, "code")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := code.PutBytes(ctx, "pkg", bytes.Repeat([]byte("zip"), 400_000)); err != nil {
		t.Fatal(err)
	}
	js := st.JetStream()
	q, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "INVOKE_ASYNC", Subjects: []string{"async.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := js.Publish(ctx, "async.fn", []byte(fmt.Sprint("event ", i))); err != nil {
			t.Fatal(err)
		}
	}
	c, err := q.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Fetch(2)
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func serve(t *testing.T, st *store.Store, token string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(Path, Handler(st, func(r *http.Request) bool { return r.Header.Get("X-Lambdaplane-Admin-Token") == token }))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestBackupRestore: a backup of a running store restores into an empty
// data directory with every record, object, queued event and data file;
// restore refuses a non-empty data directory and a damaged backup; backup
// refuses a non-empty directory and a wrong token.
func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	st, err := store.Open(ctx, store.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fill(t, st)
	if err := os.WriteFile(filepath.Join(data, "credentials"), []byte("[lambdaplane]\naws_access_key_id = AKIA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := serve(t, st, "secret")

	dir := filepath.Join(t.TempDir(), "b")
	if _, err := Backup(ctx, Options{Endpoint: ep, Token: "wrong", Dir: dir}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("backup with a wrong token: %v", err)
	}
	var out bytes.Buffer
	m, err := Backup(ctx, Options{Endpoint: ep, Token: "secret", DataDir: data, Dir: dir, Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup:\n%s", out.String())
	var names []string
	for _, s := range m.Streams {
		names = append(names, s.Stream)
	}
	if want := "[KV_functions OBJ_code INVOKE_ASYNC]"; fmt.Sprint(names) != want {
		t.Fatalf("streams %v, want %s", names, want)
	}
	for _, n := range names {
		if !strings.Contains(out.String(), n) {
			t.Errorf("progress does not name %s:\n%s", n, out.String())
		}
	}
	if len(m.Files) != 1 || m.Files[0].Name != "credentials" {
		t.Fatalf("data files %+v, want credentials", m.Files)
	}
	if _, err := Backup(ctx, Options{Endpoint: ep, Token: "secret", Dir: dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("backup into a used directory: %v", err)
	}

	// A non-empty data directory is refused.
	if err := Restore(ctx, RestoreOptions{Dir: dir, DataDir: data}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into the live data directory: %v", err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	out.Reset()
	if err := Restore(ctx, RestoreOptions{Dir: dir, DataDir: target, Progress: &out}); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore:\n%s", out.String())

	r, err := store.Open(ctx, store.Options{DataDir: target})
	if err != nil {
		t.Fatalf("the restored store: %v", err)
	}
	defer r.Close()
	fns, err := store.NewTable[map[string]string](ctx, r, "functions")
	if err != nil {
		t.Fatal(err)
	}
	list, err := fns.List(ctx, ">")
	if err != nil || len(list) != 40 {
		t.Fatalf("%d functions restored (%v), want 40", len(list), err)
	}
	code, err := r.Objects(ctx, "code")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := code.GetBytes(ctx, "pkg"); err != nil || len(b) != 1_200_000 {
		t.Fatalf("code package: %d bytes, %v", len(b), err)
	}
	c, err := r.JetStream().Consumer(ctx, "INVOKE_ASYNC", "workers")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(10, jetstream.FetchMaxWait(2e9))
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for msg := range batch.Messages() {
		events = append(events, string(msg.Data()))
	}
	if fmt.Sprint(events) != "[event 2 event 3 event 4]" {
		t.Fatalf("queued events after the restore: %q, want the three not acknowledged", events)
	}
	if b, err := os.ReadFile(filepath.Join(target, "credentials")); err != nil || !strings.Contains(string(b), "AKIA") {
		t.Fatalf("credentials file: %q, %v", b, err)
	}

	// A damaged backup file is found before anything is written.
	snap := filepath.Join(dir, m.Streams[0].File)
	b, _ := os.ReadFile(snap)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := Restore(ctx, RestoreOptions{Dir: dir, DataDir: other}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("restore of a damaged backup: %v", err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("a refused restore created %s (%v)", other, err)
	}
}
