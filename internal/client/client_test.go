package client

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// env returns a getenv over vars only: nothing of the test's own
// environment (a developer's AWS_PROFILE, HOME) leaks in.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNoCredentialsFailsWithWhatToPass(t *testing.T) {
	home, data := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(data, "endpoint"), "http://127.0.0.1:9009\n")
	writeFile(t, filepath.Join(home, ".aws", "config"), "[default]\nregion = eu-west-1\ncredential_process = /bin/false\n")
	_, err := resolve(Options{DataDir: data}, env(map[string]string{"HOME": home}))
	if !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("err = %v, want ErrNoCredentials", err)
	}
	for _, want := range []string{"--profile", "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", ".lambdaplane/credentials", "--data DIR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %s", err, want)
		}
	}
}

func TestCredentialSources(t *testing.T) {
	home, data, other := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(data, "endpoint"), "http://127.0.0.1:9009\n")
	writeFile(t, filepath.Join(data, "credentials"), "[lambdaplane]\naws_access_key_id = LOCAL\naws_secret_access_key = s1\nregion = eu-central-1\n\n[dev]\naws_access_key_id = DEV\naws_secret_access_key = s2\n")
	writeFile(t, filepath.Join(home, ".aws", "credentials"), "# home\n[default]\naws_access_key_id = HOMEDEF ; comment\naws_secret_access_key = s3\n[sso]\nsso_session = x\n")
	shared := filepath.Join(other, "creds")
	writeFile(t, shared, "[default]\naws_access_key_id=SHAREDDEF\naws_secret_access_key=s4\naws_session_token=tok\n[p]\naws_access_key_id=SHAREDP\naws_secret_access_key=s5\n")
	emptyData := t.TempDir()
	writeFile(t, filepath.Join(emptyData, "endpoint"), "http://127.0.0.1:9009\n")

	for _, tc := range []struct {
		name    string
		o       Options
		vars    map[string]string
		wantKey string
		wantErr string
	}{
		{name: "data dir profile by default", o: Options{DataDir: data}, vars: map[string]string{"HOME": home}, wantKey: "LOCAL"},
		{name: "home default without data dir credentials", o: Options{DataDir: emptyData}, vars: map[string]string{"HOME": home}, wantKey: "HOMEDEF"},
		{name: "--profile from the data dir", o: Options{DataDir: data, Profile: "dev"}, vars: map[string]string{"HOME": home}, wantKey: "DEV"},
		{name: "--profile beats keys in the environment", o: Options{DataDir: data, Profile: "dev"}, vars: map[string]string{"AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "x"}, wantKey: "DEV"},
		{name: "environment keys", o: Options{DataDir: data}, vars: map[string]string{"HOME": home, "AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "x", "AWS_PROFILE": "dev"}, wantKey: "ENV"},
		{name: "half the environment keys", o: Options{DataDir: data}, vars: map[string]string{"AWS_ACCESS_KEY_ID": "ENV"}, wantErr: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"},
		{name: "AWS_PROFILE", o: Options{DataDir: data}, vars: map[string]string{"HOME": home, "AWS_PROFILE": "dev"}, wantKey: "DEV"},
		{name: "AWS_SHARED_CREDENTIALS_FILE default", o: Options{DataDir: data}, vars: map[string]string{"HOME": home, "AWS_SHARED_CREDENTIALS_FILE": shared}, wantKey: "SHAREDDEF"},
		{name: "AWS_SHARED_CREDENTIALS_FILE with AWS_PROFILE", o: Options{DataDir: data}, vars: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": shared, "AWS_PROFILE": "p"}, wantKey: "SHAREDP"},
		{name: "profile without static keys", o: Options{DataDir: emptyData, Profile: "sso"}, vars: map[string]string{"HOME": home}, wantErr: `profile "sso" (--profile) has no aws_access_key_id`},
		{name: "unknown profile", o: Options{DataDir: data}, vars: map[string]string{"HOME": home, "AWS_PROFILE": "nope"}, wantErr: `profile "nope" (AWS_PROFILE)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := resolve(tc.o, env(tc.vars))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Creds.AccessKeyID != tc.wantKey {
				t.Fatalf("access key %q, want %q", c.Creds.AccessKeyID, tc.wantKey)
			}
		})
	}
}

func TestRegionAndEndpoint(t *testing.T) {
	data := t.TempDir()
	writeFile(t, filepath.Join(data, "credentials"), "[lambdaplane]\naws_access_key_id = A\naws_secret_access_key = s\nregion = eu-central-1\n")
	if _, err := resolve(Options{DataDir: data}, env(nil)); err == nil || !strings.Contains(err.Error(), "no server endpoint") {
		t.Fatalf("without an endpoint: err = %v", err)
	}
	if _, err := resolve(Options{DataDir: data, EndpointURL: "lambda.us-east-1.amazonaws.com"}, env(nil)); err == nil {
		t.Fatal("an endpoint without a scheme was accepted")
	}
	writeFile(t, filepath.Join(data, "endpoint"), "http://127.0.0.1:9009\n")
	c, err := resolve(Options{DataDir: data}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "eu-central-1" || c.Endpoint != "http://127.0.0.1:9009" || c.Config.BaseEndpoint == nil || *c.Config.BaseEndpoint != c.Endpoint {
		t.Fatalf("region %q endpoint %q base %v", c.Region, c.Endpoint, c.Config.BaseEndpoint)
	}
	// SDK clients built from c.Config get exactly these keys: no chain
	// behind them that could fall back to instance metadata.
	if _, ok := c.Config.Credentials.(credentials.StaticCredentialsProvider); !ok {
		t.Fatalf("credentials provider %T, want a static one", c.Config.Credentials)
	}
	c, err = resolve(Options{DataDir: data, Region: "ap-south-1", EndpointURL: "http://127.0.0.1:1/"}, env(map[string]string{"AWS_REGION": "x", "AWS_ENDPOINT_URL": "http://127.0.0.1:2"}))
	if err != nil || c.Region != "ap-south-1" || c.Endpoint != "http://127.0.0.1:1" {
		t.Fatalf("flags: %v %+v", err, c)
	}
	c, err = resolve(Options{DataDir: data}, env(map[string]string{"AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": "http://127.0.0.1:2"}))
	if err != nil || c.Region != "us-west-2" || c.Endpoint != "http://127.0.0.1:2" {
		t.Fatalf("variables: %v %+v", err, c)
	}
}

// TestBinaryLinksNoDefaultCredentialChain: the lambdaplane binary does not
// even contain the SDK's default configuration loader or the providers that
// reach out (instance metadata, SSO, credential processes), so no client
// command can fall back to them.
func TestBinaryLinksNoDefaultCredentialChain(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/lambdaplane/lambdaplane/cmd/lambdaplane").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 || !slices.Contains(deps, "github.com/lambdaplane/lambdaplane/internal/client") {
		t.Fatalf("go list returned an unexpected dependency list (%d packages)", len(deps))
	}
	for _, dep := range deps {
		for _, bad := range []string{
			"github.com/aws/aws-sdk-go-v2/config",
			"github.com/aws/aws-sdk-go-v2/feature/ec2/imds",
			"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds",
			"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds",
			"github.com/aws/aws-sdk-go-v2/credentials/ssocreds",
			"github.com/aws/aws-sdk-go-v2/credentials/processcreds",
			"github.com/aws/aws-sdk-go-v2/credentials/stscreds",
		} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("cmd/lambdaplane links %s", dep)
			}
		}
	}
}
