package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
)

// Options are the flags a client subcommand accepts.
type Options struct {
	EndpointURL string
	Profile     string
	Region      string
	DataDir     string // the local server's data directory (default ./.lambdaplane)
}

// Client is a resolved endpoint plus credentials.
type Client struct {
	Endpoint string
	Region   string
	Creds    aws.Credentials
	HTTP     *http.Client
	Config   aws.Config
}

// Resolve applies flags, then AWS_* variables, then the data directory.
func Resolve(ctx context.Context, o Options) (*Client, error) {
	if o.DataDir == "" {
		o.DataDir = ".lambdaplane"
	}
	endpoint := o.EndpointURL
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	if endpoint == "" {
		b, err := os.ReadFile(filepath.Join(o.DataDir, "endpoint"))
		if err != nil {
			return nil, fmt.Errorf("no server endpoint: pass --endpoint-url, set AWS_ENDPOINT_URL, or run from the directory holding the server's data directory (%s/endpoint not found)", o.DataDir)
		}
		endpoint = strings.TrimSpace(string(b))
	}
	var opts []func(*config.LoadOptions) error
	profile := o.Profile
	credFile := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if credFile == "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		local := filepath.Join(o.DataDir, "credentials")
		if _, err := os.Stat(local); err == nil {
			credFile = local
			if profile == "" && os.Getenv("AWS_PROFILE") == "" {
				profile = "lambdaplane"
			}
		}
	}
	if credFile != "" {
		opts = append(opts, config.WithSharedCredentialsFiles([]string{credFile}))
	}
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	region := o.Region
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		region = "us-east-1"
	}
	opts = append(opts, config.WithRegion(region))
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("no credentials: pass --profile, set AWS_SHARED_CREDENTIALS_FILE/AWS_PROFILE, or run next to the server's data directory: %w", err)
	}
	cfg.BaseEndpoint = aws.String(endpoint)
	return &Client{Endpoint: strings.TrimRight(endpoint, "/"), Region: region, Creds: creds, HTTP: &http.Client{}, Config: cfg}, nil
}

// Do signs and sends a request for service with body.
func (c *Client) Do(ctx context.Context, service, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Endpoint+path, strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	if err := v4.NewSigner().SignHTTP(ctx, c.Creds, req, hash, service, c.Region, time.Now()); err != nil {
		return nil, err
	}
	return c.HTTP.Do(req)
}

// ReadError turns a non-2xx response into an error with the server's message.
func ReadError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
}
