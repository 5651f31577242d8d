package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientCommandsNeverReachOut: with no profile, no AWS_* variables, an
// empty HOME and a data directory without credentials, client commands fail
// with the message saying what to pass, and send nothing: they run in a
// network namespace that has only loopback, where an attempt to reach
// instance metadata (169.254.169.254) or AWS would end in a network error
// instead.
func TestClientCommandsNeverReachOut(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	home, work := t.TempDir(), t.TempDir()
	data := filepath.Join(work, ".lambdaplane")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+home)
	run := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A new network namespace whose only interface is loopback, up.
		cmd := exec.CommandContext(ctx, "unshare", append([]string{"--net", "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`, filepath.Join(binDir, "lambdaplane")}, args...)...)
		cmd.Dir, cmd.Env = work, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("lambdaplane %v: %v, want it to exit with an error by itself\n%s", args, err, out.String())
		}
		return out.String(), ee.ExitCode()
	}
	const noCreds = "no credentials: pass --profile, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run from the directory whose .lambdaplane/credentials the server wrote (--data DIR)"
	check := func(what string, args ...string) {
		t.Helper()
		out, code := run(args...)
		if code != 1 || !strings.Contains(out, noCreds) {
			t.Errorf("%s: exit %d, output %q; want exit 1 and %q", what, code, out, noCreds)
		}
	}
	check("logs, no endpoint", "logs", "x")
	check("instance run, no endpoint", "instance", "run", "--subnet-id", "subnet-1", "--", "true")
	if err := os.WriteFile(filepath.Join(data, "endpoint"), []byte("http://127.0.0.1:9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("logs, endpoint in the data dir", "logs", "x")
	check("logs --endpoint-url", "logs", "x", "--endpoint-url", "http://127.0.0.1:9")

	// The namespace lets loopback through and nothing else: with
	// credentials the same command gets as far as the endpoint.
	creds := "[lambdaplane]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n"
	if err := os.WriteFile(filepath.Join(data, "credentials"), []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := run("logs", "x"); code != 1 || !strings.Contains(out, "127.0.0.1:9") || !strings.Contains(out, "connection refused") {
		t.Errorf("with credentials: exit %d, output %q; want connection refused by 127.0.0.1:9", code, out)
	}
}
