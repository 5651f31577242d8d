package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
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
	Config   aws.Config // for SDK clients: static credentials, BaseEndpoint set
}

// Resolve finds the endpoint and static credentials from explicit flags,
// the standard AWS_* variables, the shared credentials file and the local
// data directory only (see resolveCredentials). It never uses the AWS SDK's
// default chain, so it never asks instance metadata, SSO or a credential
// process, and it never falls back to AWS's public endpoints: the endpoint
// is --endpoint-url, AWS_ENDPOINT_URL or <data>/endpoint.
func Resolve(ctx context.Context, o Options) (*Client, error) {
	return resolve(o, os.Getenv)
}

func resolve(o Options, getenv func(string) string) (*Client, error) {
	if o.DataDir == "" {
		o.DataDir = ".lambdaplane"
	}
	f, err := resolveCredentials(o, getenv)
	if err != nil {
		return nil, err
	}
	endpoint := o.EndpointURL
	if endpoint == "" {
		endpoint = getenv("AWS_ENDPOINT_URL")
	}
	if endpoint == "" {
		b, err := os.ReadFile(filepath.Join(o.DataDir, "endpoint"))
		if err != nil {
			return nil, fmt.Errorf("no server endpoint: pass --endpoint-url, set AWS_ENDPOINT_URL, or run from the directory holding the server's data directory (%s/endpoint not found)", o.DataDir)
		}
		endpoint = strings.TrimSpace(string(b))
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q: give a URL such as http://127.0.0.1:9009", endpoint)
	}
	endpoint = strings.TrimRight(endpoint, "/")
	region := o.Region
	for _, v := range []string{getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"), f.region, "us-east-1"} {
		if region == "" {
			region = v
		}
	}
	cfg := aws.Config{
		Region:       region,
		Credentials:  credentials.StaticCredentialsProvider{Value: f.creds},
		BaseEndpoint: aws.String(endpoint),
	}
	return &Client{Endpoint: endpoint, Region: region, Creds: f.creds, HTTP: &http.Client{}, Config: cfg}, nil
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
