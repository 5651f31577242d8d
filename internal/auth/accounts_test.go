package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// openStore opens a store in dir, closed when the test ends (after the
// registries opened on it, cleanups running last-in first-out).
func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(s.Close) })
	return s
}

func openAccounts(t *testing.T, s *store.Store) *Accounts {
	t.Helper()
	a, err := NewAccounts(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

var (
	reAccountID = regexp.MustCompile(`^[1-9][0-9]{11}$`)
	reKeyID     = regexp.MustCompile(`^AKIA[A-Z2-7]{16}$`)
	reSecret    = regexp.MustCompile(`^[A-Za-z0-9+/]{40}$`)
)

func TestAccountsCreateAndLookup(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := openAccounts(t, s)
	ctx := t.Context()

	seen := map[string]bool{}
	for i := range 5 {
		acct, err := a.Create(ctx, "team")
		if err != nil {
			t.Fatal(err)
		}
		if !reAccountID.MatchString(acct.ID) || len(acct.Keys) != 1 || !reKeyID.MatchString(acct.Keys[0].ID) || !reSecret.MatchString(acct.Keys[0].Secret) {
			t.Fatalf("account %d malformed: %+v", i, acct)
		}
		if seen[acct.ID] {
			t.Fatalf("duplicate account id %s", acct.ID)
		}
		seen[acct.ID] = true
		// Visible at once to LookupKey (no wait for the watch).
		got, key, ok := a.LookupKey(acct.Keys[0].ID)
		if !ok || got.ID != acct.ID || key != acct.Keys[0] {
			t.Fatalf("LookupKey after Create: %v %+v %+v", ok, got, key)
		}
		g, err := a.Get(ctx, acct.ID)
		if err != nil || g.ID != acct.ID || g.Name != "team" {
			t.Fatalf("Get: %+v %v", g, err)
		}
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 5 {
		t.Fatalf("List: %d %v", len(list), err)
	}
	if _, err := a.Get(ctx, "999999999999"); !errors.Is(err, ErrAccountNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, _, ok := a.LookupKey("AKIANOTKNOWNNOTKNOWN"); ok {
		t.Fatal("unknown key found")
	}
}

// TestAccountsWatch: a second registry on the same store (another process,
// in production) learns of accounts through the watch alone.
func TestAccountsWatch(t *testing.T) {
	s := openStore(t, t.TempDir())
	a1 := openAccounts(t, s)
	a2 := openAccounts(t, s)
	acct, err := a1.Create(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _, ok := a2.LookupKey(acct.Keys[0].ID); ok {
			if got.ID != acct.ID {
				t.Fatalf("watched lookup: %+v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second registry never saw the new key")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEnsureFirst(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	a := openAccounts(t, s)
	ctx := t.Context()

	first, created, err := a.EnsureFirst(ctx)
	if err != nil || !created {
		t.Fatalf("EnsureFirst: created=%v err=%v", created, err)
	}
	again, created, err := a.EnsureFirst(ctx)
	if err != nil || created || again.ID != first.ID || again.Keys[0] != first.Keys[0] {
		t.Fatalf("second EnsureFirst: %+v created=%v err=%v", again, created, err)
	}
	if _, err := a.Create(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if list, _ := a.List(ctx); len(list) != 2 {
		t.Fatalf("%d accounts, want 2", len(list))
	}

	// Credentials file: mode 0600, parseable by the SDK's config loader.
	credPath := filepath.Join(dir, "credentials")
	if err := WriteCredentialsFile(credPath, first, DefaultProfile, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	// Rewriting replaces the file (atomically) and keeps the mode.
	if err := WriteCredentialsFile(credPath, first, DefaultProfile, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(credPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v err %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(credPath)
	wantPrefix := "[lambdaplane]\naws_access_key_id = " + first.Keys[0].ID + "\naws_secret_access_key = " + first.Keys[0].Secret + "\n"
	if !strings.HasPrefix(string(b), wantPrefix) {
		t.Fatalf("credentials file:\n%s", b)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".credentials.tmp*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
	cfgPath := filepath.Join(dir, "config")
	if err := WriteConfigFile(cfgPath, DefaultProfile, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithSharedCredentialsFiles([]string{credPath}),
		config.WithSharedConfigFiles([]string{cfgPath}),
		config.WithSharedConfigProfile(DefaultProfile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil || c.AccessKeyID != first.Keys[0].ID || c.SecretAccessKey != first.Keys[0].Secret {
		t.Fatalf("SDK read credentials %+v err %v", c, err)
	}
	if cfg.Region == "" {
		t.Fatal("SDK read no region")
	}

	// Restart: close everything, reopen the same data directory.
	a.Close()
	s.Close()
	s2 := openStore(t, dir)
	a2 := openAccounts(t, s2)
	if got, _, ok := a2.LookupKey(first.Keys[0].ID); !ok || got.ID != first.ID {
		t.Fatalf("after restart LookupKey: ok=%v %+v", ok, got)
	}
	if list, _ := a2.List(ctx); len(list) != 2 || list[0].ID != first.ID {
		t.Fatalf("after restart List: %+v", list)
	}
	again, created, err = a2.EnsureFirst(ctx)
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("EnsureFirst after restart: %+v created=%v err=%v", again, created, err)
	}
}

// TestEnsureFirstConcurrent: many writers (two registries, several
// goroutines each) agree on one first account.
func TestEnsureFirstConcurrent(t *testing.T) {
	s := openStore(t, t.TempDir())
	regs := []*Accounts{openAccounts(t, s), openAccounts(t, s)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	createdN := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct, created, err := regs[i%2].EnsureFirst(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[acct.ID]++
			if created {
				createdN++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != 1 || createdN != 1 {
		t.Fatalf("writers saw accounts %v, %d claimed creation", ids, createdN)
	}
	if list, _ := regs[0].List(t.Context()); len(list) != 1 {
		t.Fatalf("%d accounts stored, want 1", len(list))
	}
}

// TestEnsureFirstRepairsHalfCreation: a marker written by a writer that
// crashed before storing the account is completed by the next EnsureFirst.
func TestEnsureFirstRepairsHalfCreation(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := openAccounts(t, s)
	ctx := t.Context()
	cand, err := newAccount(firstAccountName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.meta.Create(ctx, firstAccountKey, cand); err != nil {
		t.Fatal(err)
	}
	got, created, err := a.EnsureFirst(ctx)
	if err != nil || created || got.ID != cand.ID {
		t.Fatalf("EnsureFirst: %+v created=%v err=%v", got, created, err)
	}
	if _, _, ok := a.LookupKey(cand.Keys[0].ID); !ok {
		t.Fatal("repaired account's key not usable")
	}
	if list, _ := a.List(ctx); len(list) != 1 {
		t.Fatalf("%d accounts", len(list))
	}
}

// TestUserKeys: an IAM user's keys resolve to the account and the user, at
// most two per user, and a deleted key stops resolving; root keys cannot be
// deleted through it.
func TestUserKeys(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := openAccounts(t, s)
	ctx := t.Context()
	acct, err := a.Create(ctx, "tenant")
	if err != nil {
		t.Fatal(err)
	}
	k1, err := a.CreateUserKey(ctx, acct.ID, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if got, key, ok := a.LookupKey(k1.ID); !ok || got.ID != acct.ID || key.User != "dev" || key.Secret != k1.Secret {
		t.Fatalf("lookup user key: %v %+v %v", got.ID, key, ok)
	}
	if _, err := a.CreateUserKey(ctx, acct.ID, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateUserKey(ctx, acct.ID, "dev"); !errors.Is(err, ErrKeyLimit) {
		t.Fatalf("third key: %v, want ErrKeyLimit", err)
	}
	if keys, err := a.UserKeys(ctx, acct.ID, "dev"); err != nil || len(keys) != 2 {
		t.Fatalf("UserKeys: %v %v", keys, err)
	}
	if err := a.DeleteUserKey(ctx, acct.ID, "", acct.Keys[0].ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("deleting the root key: %v", err)
	}
	if err := a.DeleteUserKey(ctx, acct.ID, "dev", k1.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := a.LookupKey(k1.ID); ok {
		t.Fatal("a deleted key still resolves")
	}
	if _, _, ok := a.LookupKey(acct.Keys[0].ID); !ok {
		t.Fatal("the root key stopped resolving")
	}
}
