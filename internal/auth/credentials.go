package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultProfile is the profile name lambdaplane writes.
const DefaultProfile = "lambdaplane"

// WriteCredentialsFile writes acct's first access key to path in the AWS
// shared-credentials format under [profile] (DefaultProfile when empty):
//
//	[lambdaplane]
//	aws_access_key_id = AKIA...
//	aws_secret_access_key = ...
//	region = us-east-1
//
// The region line is written only when region is set (the AWS CLI and SDKs
// read it from this file too). The file is replaced atomically and has mode
// 0600.
func WriteCredentialsFile(path string, acct *Account, profile, region string) error {
	if acct == nil || len(acct.Keys) == 0 {
		return errors.New("write credentials: account has no access key")
	}
	if profile == "" {
		profile = DefaultProfile
	}
	k := acct.Keys[0]
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", profile, k.ID, k.Secret)
	if region != "" {
		fmt.Fprintf(&b, "region = %s\n", region)
	}
	return writeFileAtomic(path, []byte(b.String()))
}

// WriteConfigFile writes an AWS config file (AWS_CONFIG_FILE) that sets the
// region of profile (DefaultProfile when empty), replacing path atomically
// with mode 0600.
func WriteConfigFile(path, profile, region string) error {
	if profile == "" {
		profile = DefaultProfile
	}
	section := "profile " + profile
	if profile == "default" {
		section = "default"
	}
	return writeFileAtomic(path, fmt.Appendf(nil, "[%s]\nregion = %s\noutput = json\n", section, region))
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it over path, so readers see the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
