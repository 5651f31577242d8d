package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// KeyLookup resolves an access key id to its account and key pair. It is
// called on every request and must not block on the store (*Accounts serves
// it from memory).
type KeyLookup interface {
	LookupKey(keyID string) (Account, AccessKey, bool)
}

const (
	sigAlgorithm   = "AWS4-HMAC-SHA256"
	amzDateFormat  = "20060102T150405Z"
	maxClockSkew   = 15 * time.Minute
	maxPresignLife = 7 * 24 * time.Hour // AWS caps X-Amz-Expires at 604800 s
	unsignedBody   = "UNSIGNED-PAYLOAD"
	hdrContentSHA  = "X-Amz-Content-Sha256"
	hdrSecurityTok = "X-Amz-Security-Token"
)

// Verifier checks AWS Signature Version 4 on incoming requests by
// recomputing the signature with the aws-sdk-go-v2 signer over a clean copy
// of the request that holds only what the client signed.
type Verifier struct {
	keys   KeyLookup
	now    func() time.Time
	signer *v4.Signer
}

// NewVerifier returns a Verifier that resolves keys with keys and reads the
// clock with now (nil means time.Now).
func NewVerifier(keys KeyLookup, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{keys: keys, now: now, signer: v4.NewSigner()}
}

// sigParams is what a request says about its own signature, from either the
// Authorization header or the presigned query.
type sigParams struct {
	keyID         string
	date          string // credential-scope date, YYYYMMDD
	region        string
	service       string
	signedHeaders []string // lower case, as listed by the client
	signature     string   // hex
	amzDate       time.Time
	presigned     bool
	expires       time.Duration // presigned only
}

// Verify authenticates r. body is the complete request body (already read
// by the caller). It returns the signer's identity, or an error that wraps
// one of ErrMissingAuth, ErrMalformedAuth, ErrUnknownKey, ErrClockSkew,
// ErrPresignedExpired or ErrBadSignature.
func (v *Verifier) Verify(r *http.Request, body []byte) (Identity, error) {
	p, err := parseSigParams(r)
	if err != nil {
		return Identity{}, err
	}
	if r.Header.Get(hdrSecurityTok) != "" || (p.presigned && r.URL.Query().Get(hdrSecurityTok) != "") {
		// lambdaplane issues no temporary credentials, so no session token
		// can be valid.
		return Identity{}, fmt.Errorf("%w (X-Amz-Security-Token is not accepted: lambdaplane issues only long-term access keys; unset AWS_SESSION_TOKEN)", ErrUnknownKey)
	}
	acct, key, ok := v.keys.LookupKey(p.keyID)
	if !ok {
		return Identity{}, fmt.Errorf("%w (access key %s is not known here; use the credentials lambdaplane wrote for this server)", ErrUnknownKey, p.keyID)
	}
	now := v.now()
	if p.presigned {
		if p.amzDate.Sub(now) > maxClockSkew {
			return Identity{}, fmt.Errorf("%w (presigned request dated %s is in the future; server time is %s)", ErrClockSkew, p.amzDate.Format(amzDateFormat), now.UTC().Format(amzDateFormat))
		}
		if now.After(p.amzDate.Add(p.expires)) {
			return Identity{}, fmt.Errorf("%w (signed at %s, valid for %s)", ErrPresignedExpired, p.amzDate.Format(amzDateFormat), p.expires)
		}
	} else if d := now.Sub(p.amzDate); d > maxClockSkew || d < -maxClockSkew {
		return Identity{}, fmt.Errorf("%w (request time %s, server time %s; fix the client's clock)", ErrClockSkew, p.amzDate.Format(amzDateFormat), now.UTC().Format(amzDateFormat))
	}

	// Payload hash: the client's X-Amz-Content-Sha256 when sent (it is then
	// checked against the body unless it is UNSIGNED-PAYLOAD), else the
	// SHA-256 of the body.
	bodyHash := ""
	hashes := make([]string, 0, 2)
	if h := r.Header.Get(hdrContentSHA); h != "" {
		if h != unsignedBody {
			if strings.HasPrefix(h, "STREAMING-") {
				return Identity{}, fmt.Errorf("%w (X-Amz-Content-Sha256 %s: chunked payload signing is not supported)", ErrMalformedAuth, h)
			}
			bodyHash = sha256Hex(body)
			if !strings.EqualFold(h, bodyHash) {
				return Identity{}, fmt.Errorf("%w (X-Amz-Content-Sha256 does not match the body)", ErrBadSignature)
			}
		}
		hashes = append(hashes, h)
	} else {
		hashes = append(hashes, sha256Hex(body))
		if p.presigned {
			hashes = append(hashes, unsignedBody)
		}
	}

	rawPath := requestPath(r)
	// Canonical URI: AWS SDKs and botocore escape the already-escaped path
	// once more for every service but S3; S3-style signers do not. Try the
	// usual form first, the other only when it would differ.
	escapes := []bool{false}
	if needsPathEscape(rawPath) {
		escapes = append(escapes, true)
	}
	creds := aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}
	want, err := hex.DecodeString(p.signature)
	if err != nil || len(want) != sha256.Size {
		return Identity{}, fmt.Errorf("%w (Signature must be 64 hexadecimal digits)", ErrMalformedAuth)
	}
	for _, disableEscape := range escapes {
		for _, ph := range hashes {
			got, err := v.sign(r, p, rawPath, creds, ph, disableEscape)
			if err != nil {
				return Identity{}, err
			}
			if hmac.Equal(got, want) {
				return Identity{
					AccountID:   acct.ID,
					AccessKeyID: key.ID,
					User:        key.User,
					Service:     p.service,
					Region:      p.region,
				}, nil
			}
		}
	}
	return Identity{}, ErrBadSignature
}

// sign recomputes the signature of r as the client would have, and returns
// it as raw bytes.
func (v *Verifier) sign(r *http.Request, p *sigParams, rawPath string, creds aws.Credentials, payloadHash string, disableEscape bool) ([]byte, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	clean := &http.Request{
		Method: r.Method,
		Host:   r.Host,
		Header: make(http.Header, len(p.signedHeaders)+2),
		// Opaque makes the signer take the path exactly as it was sent.
		URL: &url.URL{Scheme: scheme, Opaque: "//" + r.Host + rawPath},
	}
	clean.URL.RawQuery = r.URL.RawQuery
	if p.presigned {
		// Everything but the signature itself (X-Amz-Expires included) is
		// part of the signed query.
		query := r.URL.Query()
		query.Del("X-Amz-Signature")
		clean.URL.RawQuery = query.Encode()
	}
	for _, h := range p.signedHeaders {
		switch h {
		case "host":
			// The signer takes it from clean.Host.
		case "content-length":
			n := r.ContentLength
			if n < 0 {
				n, _ = strconv.ParseInt(r.Header.Get("Content-Length"), 10, 64)
			}
			// The SDK signer signs content-length only when positive, so a
			// signed "content-length: 0" cannot be reproduced (no SDK or
			// botocore request does that).
			clean.ContentLength = n
		default:
			ck := http.CanonicalHeaderKey(h)
			if vals, ok := r.Header[ck]; ok {
				clean.Header[ck] = vals
			}
		}
	}
	opt := func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = disableEscape
		o.DisableHeaderHoisting = true
		o.DisableSessionToken = true
	}
	var sig string
	if p.presigned {
		uri, _, err := v.signer.PresignHTTP(context.Background(), creds, clean, payloadHash, p.service, p.region, p.amzDate, opt)
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrMalformedAuth, err)
		}
		i := strings.LastIndex(uri, "X-Amz-Signature=")
		if i < 0 {
			return nil, fmt.Errorf("%w (signer produced no signature)", ErrMalformedAuth)
		}
		sig = uri[i+len("X-Amz-Signature="):]
	} else {
		if err := v.signer.SignHTTP(context.Background(), creds, clean, payloadHash, p.service, p.region, p.amzDate, opt); err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrMalformedAuth, err)
		}
		authz := clean.Header.Get("Authorization")
		i := strings.LastIndex(authz, "Signature=")
		if i < 0 {
			return nil, fmt.Errorf("%w (signer produced no signature)", ErrMalformedAuth)
		}
		sig = authz[i+len("Signature="):]
	}
	b, err := hex.DecodeString(sig)
	if err != nil {
		return nil, fmt.Errorf("%w (signer produced %q)", ErrMalformedAuth, sig)
	}
	return b, nil
}

// parseSigParams reads the signature parameters from the Authorization
// header or, failing that, from a presigned query.
func parseSigParams(r *http.Request) (*sigParams, error) {
	if authz := r.Header.Get("Authorization"); authz != "" {
		return parseAuthorization(r, authz)
	}
	q := r.URL.Query()
	if q.Get("X-Amz-Signature") != "" || q.Get("X-Amz-Algorithm") != "" || q.Get("X-Amz-Credential") != "" {
		return parsePresigned(q)
	}
	return nil, ErrMissingAuth
}

func parseAuthorization(r *http.Request, authz string) (*sigParams, error) {
	alg, rest, ok := strings.Cut(strings.TrimSpace(authz), " ")
	if !ok || alg != sigAlgorithm {
		return nil, fmt.Errorf("%w (want %s Credential=..., SignedHeaders=..., Signature=...)", ErrMalformedAuth, sigAlgorithm)
	}
	p := &sigParams{}
	var cred, signed string
	for _, part := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%w (component %q is not key=value)", ErrMalformedAuth, strings.TrimSpace(part))
		}
		switch k {
		case "Credential":
			cred = val
		case "SignedHeaders":
			signed = val
		case "Signature":
			p.signature = val
		}
	}
	if cred == "" || signed == "" || p.signature == "" {
		return nil, fmt.Errorf("%w (Credential, SignedHeaders and Signature are all required)", ErrMalformedAuth)
	}
	if err := p.setCredential(cred); err != nil {
		return nil, err
	}
	p.signedHeaders = strings.Split(signed, ";")
	amz := r.Header.Get("X-Amz-Date")
	if amz == "" {
		return nil, fmt.Errorf("%w (X-Amz-Date header is required)", ErrMalformedAuth)
	}
	if err := p.setDate(amz); err != nil {
		return nil, err
	}
	return p, nil
}

func parsePresigned(q url.Values) (*sigParams, error) {
	if alg := q.Get("X-Amz-Algorithm"); alg != sigAlgorithm {
		return nil, fmt.Errorf("%w (X-Amz-Algorithm must be %s)", ErrMalformedAuth, sigAlgorithm)
	}
	p := &sigParams{presigned: true, signature: q.Get("X-Amz-Signature")}
	cred, signed, amz, exp := q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Date"), q.Get("X-Amz-Expires")
	if cred == "" || signed == "" || amz == "" || p.signature == "" {
		return nil, fmt.Errorf("%w (presigned query needs X-Amz-Credential, X-Amz-Date, X-Amz-SignedHeaders and X-Amz-Signature)", ErrMalformedAuth)
	}
	if err := p.setCredential(cred); err != nil {
		return nil, err
	}
	p.signedHeaders = strings.Split(signed, ";")
	if err := p.setDate(amz); err != nil {
		return nil, err
	}
	p.expires = maxPresignLife
	if exp != "" {
		n, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || n < 1 || time.Duration(n)*time.Second > maxPresignLife {
			return nil, fmt.Errorf("%w (X-Amz-Expires must be 1..604800 seconds, got %q)", ErrMalformedAuth, exp)
		}
		p.expires = time.Duration(n) * time.Second
	}
	return p, nil
}

// setCredential parses AKID/YYYYMMDD/region/service/aws4_request.
func (p *sigParams) setCredential(cred string) error {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" || len(parts[1]) != 8 || parts[2] == "" || parts[3] == "" {
		return fmt.Errorf("%w (Credential %q is not AKID/YYYYMMDD/region/service/aws4_request)", ErrMalformedAuth, cred)
	}
	p.keyID, p.date, p.region, p.service = parts[0], parts[1], parts[2], parts[3]
	return nil
}

func (p *sigParams) setDate(amz string) error {
	t, err := time.Parse(amzDateFormat, amz)
	if err != nil {
		return fmt.Errorf("%w (X-Amz-Date %q is not in the form 20060102T150405Z)", ErrMalformedAuth, amz)
	}
	if amz[:8] != p.date {
		return fmt.Errorf("%w (credential scope date %s does not match X-Amz-Date %s)", ErrBadSignature, p.date, amz)
	}
	p.amzDate = t
	return nil
}

// ScopeService returns the service named in the request's SigV4 credential
// scope ("lambda", "ec2", "iam"), or "" when the request carries none. It
// does not verify anything: the front uses it to choose an error format.
func ScopeService(r *http.Request) string {
	var cred string
	if authz := r.Header.Get("Authorization"); authz != "" {
		i := strings.Index(authz, "Credential=")
		if i < 0 {
			return ""
		}
		cred = authz[i+len("Credential="):]
		if j := strings.IndexAny(cred, ", "); j >= 0 {
			cred = cred[:j]
		}
	} else if strings.Contains(r.URL.RawQuery, "X-Amz-Credential=") {
		cred = r.URL.Query().Get("X-Amz-Credential")
	}
	// AKID/date/region/service/aws4_request
	for range 3 {
		i := strings.IndexByte(cred, '/')
		if i < 0 {
			return ""
		}
		cred = cred[i+1:]
	}
	svc, _, ok := strings.Cut(cred, "/")
	if !ok {
		return ""
	}
	return svc
}

// requestPath is the path exactly as the client sent it (escaped).
func requestPath(r *http.Request) string {
	if u := r.RequestURI; strings.HasPrefix(u, "/") {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		return u
	}
	if p := r.URL.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

// needsPathEscape reports whether SigV4 path escaping would change p.
func needsPathEscape(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
			return true
		}
	}
	return false
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
