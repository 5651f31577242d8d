package client

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// LocalProfile is the profile the server writes to <data>/credentials.
const LocalProfile = "lambdaplane"

// ErrNoCredentials means no flag, variable or file named credentials.
var ErrNoCredentials = errors.New("no credentials: pass --profile, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run from the directory whose .lambdaplane/credentials the server wrote (--data DIR)")

// found is static credentials and where they came from.
type found struct {
	creds  aws.Credentials
	region string // the profile's region line, if any
	source string
}

// resolveCredentials finds static keys, in this order:
//
//  1. --profile P: profile P of the shared credentials file
//     (AWS_SHARED_CREDENTIALS_FILE, else <data>/credentials, then
//     ~/.aws/credentials);
//  2. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN);
//  3. AWS_PROFILE=P, as 1;
//  4. no profile: AWS_SHARED_CREDENTIALS_FILE's "default" (else
//     "lambdaplane") profile; else <data>/credentials' "lambdaplane"
//     profile; else ~/.aws/credentials' "default".
//
// Nothing else is consulted: no instance metadata (IMDS), container
// credentials, SSO, credential_process or web identity, so a client command
// never sends a packet anywhere but to the endpoint it was given.
func resolveCredentials(o Options, getenv func(string) string) (found, error) {
	sharedFile := getenv("AWS_SHARED_CREDENTIALS_FILE")
	local := filepath.Join(o.DataDir, "credentials")
	home := ""
	if h := getenv("HOME"); h != "" {
		home = filepath.Join(h, ".aws", "credentials")
	}
	files := []string{sharedFile}
	if sharedFile == "" {
		files = []string{local, home}
	}
	if o.Profile != "" {
		return fromProfile(o.Profile, "--profile", files)
	}
	id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	switch {
	case id != "" && secret != "":
		return found{creds: aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: getenv("AWS_SESSION_TOKEN"), Source: "environment"}, source: "AWS_ACCESS_KEY_ID"}, nil
	case id != "":
		return found{}, errors.New("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or neither")
	case secret != "":
		return found{}, errors.New("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both, or neither")
	}
	if p := getenv("AWS_PROFILE"); p != "" {
		return fromProfile(p, "AWS_PROFILE", files)
	}
	var tries []struct{ file, profile string }
	if sharedFile != "" {
		tries = append(tries, struct{ file, profile string }{sharedFile, "default"}, struct{ file, profile string }{sharedFile, LocalProfile})
	} else {
		tries = append(tries, struct{ file, profile string }{local, LocalProfile}, struct{ file, profile string }{home, "default"})
	}
	for _, tr := range tries {
		if tr.file == "" {
			continue
		}
		f, ok, err := readProfile(tr.file, tr.profile)
		if err != nil {
			return found{}, err
		}
		if ok {
			return f, nil
		}
	}
	return found{}, ErrNoCredentials
}

// fromProfile returns profile's keys from the first of files that has it.
func fromProfile(profile, via string, files []string) (found, error) {
	var looked []string
	for _, file := range files {
		if file == "" {
			continue
		}
		looked = append(looked, file)
		f, ok, err := readProfile(file, profile)
		if err != nil {
			return found{}, err
		}
		if ok {
			return f, nil
		}
	}
	return found{}, fmt.Errorf("no credentials: profile %q (%s) has no aws_access_key_id and aws_secret_access_key in %s; lambdaplane reads static keys only (set AWS_SHARED_CREDENTIALS_FILE, or pass --data DIR for the server's credentials)", profile, via, strings.Join(looked, ", "))
}

// readProfile reads profile's static keys from a shared credentials file
// (INI: "[name]" sections of "key = value" lines, # and ; comments). A
// missing file or profile, or a profile without both keys, is not found.
func readProfile(path, profile string) (found, bool, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return found{}, false, nil
	}
	if err != nil {
		return found{}, false, fmt.Errorf("read credentials file: %w", err)
	}
	defer fh.Close()
	vals := map[string]string{}
	in := false
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			name, _, _ := strings.Cut(line[1:], "]")
			in = strings.TrimSpace(name) == profile
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if i := strings.IndexAny(v, "#;"); i > 0 && (v[i-1] == ' ' || v[i-1] == '\t') {
			v = strings.TrimSpace(v[:i])
		}
		vals[strings.ToLower(strings.TrimSpace(k))] = v
	}
	if err := sc.Err(); err != nil {
		return found{}, false, fmt.Errorf("read credentials file %s: %w", path, err)
	}
	id, secret := vals["aws_access_key_id"], vals["aws_secret_access_key"]
	if id == "" || secret == "" {
		return found{}, false, nil
	}
	return found{
		creds:  aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: vals["aws_session_token"], Source: path},
		region: vals["region"],
		source: fmt.Sprintf("profile %s of %s", profile, path),
	}, true, nil
}
