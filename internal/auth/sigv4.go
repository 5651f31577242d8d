package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
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
	region string // "" = any
	// sessions resolves temporary credentials; nil: none are accepted.
	sessions SessionLookup
}

// SetSessions makes the Verifier accept temporary credentials (an ASIA…
// key with X-Amz-Security-Token) that sessions knows, until they expire.
func (v *Verifier) SetSessions(sessions SessionLookup) { v.sessions = sessions }

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

// SetRegion makes the Verifier accept only credential scopes of region
// (and us-east-1 for the global services, iam), as AWS does: a request
// scoped to another region is refused before its key is looked up. ""
// accepts any region.
func (v *Verifier) SetRegion(region string) { v.region = region }

// globalRegion is the signing region of AWS's global services: IAM requests
// are scoped to us-east-1 whatever region the client is in.
var globalRegion = map[string]string{"iam": "us-east-1", "sts": "us-east-1"}

// Pending is a request whose headers have been authenticated as far as they
// can be without its body: Finish completes the check with the body's
// SHA-256.
type Pending struct {
	v        *Verifier
	r        *http.Request
	p        *sigParams
	id       Identity
	creds    aws.Credentials
	declared string // X-Amz-Content-Sha256 (lower case); "" when absent
	verified bool   // the signature was verified over declared
}

// Begin authenticates r from its headers (or presigned query) alone, before
// any of its body is read: the signature's form, the credential scope (the
// server's region; service must match, unless service is ""), the access
// key, the date, and the declared payload hash. When the request declares
// X-Amz-Content-Sha256 the signature itself is verified here, over that
// hash; Finish then only checks the body against it. Without the header the
// signature covers the body's hash, so it is checked by Finish.
//
// Errors wrap one of ErrMissingAuth, ErrMalformedAuth, ErrUnknownKey,
// ErrClockSkew, ErrPresignedExpired or ErrBadSignature; a *Rejection
// carries the message the client should see (a wrong scope, an unsigned
// payload).
func (v *Verifier) Begin(r *http.Request, service string) (*Pending, error) {
	p, err := parseSigParams(r)
	if err != nil {
		return nil, err
	}
	if service != "" && p.service != service {
		return nil, &Rejection{Kind: ErrBadSignature, Message: fmt.Sprintf("Credential should be scoped to correct service: '%s'. ", service)}
	}
	if v.region != "" && p.region != v.region && p.region != globalRegion[p.service] {
		return nil, &Rejection{Kind: ErrBadSignature, Message: fmt.Sprintf("Credential should be scoped to a valid region, not '%s'. ", p.region)}
	}
	token := r.Header.Get(hdrSecurityTok)
	if token == "" && p.presigned {
		token = r.URL.Query().Get(hdrSecurityTok)
	}
	var id Identity
	var creds aws.Credentials
	if token != "" || strings.HasPrefix(p.keyID, "ASIA") {
		sess, err := v.session(r, p.keyID, token)
		if err != nil {
			return nil, err
		}
		id, creds = sess.Identity(), aws.Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.Secret}
	} else {
		acct, key, ok := v.keys.LookupKey(p.keyID)
		if !ok {
			return nil, fmt.Errorf("%w (access key %s is not known here; use the credentials lambdaplane wrote for this server)", ErrUnknownKey, p.keyID)
		}
		id = Identity{AccountID: acct.ID, AccessKeyID: key.ID, User: key.User}
		creds = aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}
	}
	id.Service, id.Region = p.service, p.region
	now := v.now()
	if p.presigned {
		if p.amzDate.Sub(now) > maxClockSkew {
			return nil, fmt.Errorf("%w (presigned request dated %s is in the future; server time is %s)", ErrClockSkew, p.amzDate.Format(amzDateFormat), now.UTC().Format(amzDateFormat))
		}
		if now.After(p.amzDate.Add(p.expires)) {
			return nil, fmt.Errorf("%w (signed at %s, valid for %s)", ErrPresignedExpired, p.amzDate.Format(amzDateFormat), p.expires)
		}
	} else if d := now.Sub(p.amzDate); d > maxClockSkew || d < -maxClockSkew {
		return nil, fmt.Errorf("%w (request time %s, server time %s; fix the client's clock)", ErrClockSkew, p.amzDate.Format(amzDateFormat), now.UTC().Format(amzDateFormat))
	}
	want, err := hex.DecodeString(p.signature)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("%w (Signature must be 64 hexadecimal digits)", ErrMalformedAuth)
	}
	pd := &Pending{v: v, r: r, p: p, id: id, creds: creds}
	h := r.Header.Get(hdrContentSHA)
	if h == "" {
		return pd, nil
	}
	switch {
	case h == unsignedBody:
		return nil, &Rejection{Kind: ErrBadSignature, Message: badSignatureMsg + " X-Amz-Content-SHA256: UNSIGNED-PAYLOAD is not accepted: sign the SHA-256 of the payload."}
	case strings.HasPrefix(h, "STREAMING-"):
		return nil, fmt.Errorf("%w (X-Amz-Content-Sha256 %s: chunked payload signing is not supported)", ErrMalformedAuth, h)
	}
	if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
		return nil, &Rejection{Kind: ErrBadSignature, Message: fmt.Sprintf("%s X-Amz-Content-SHA256 %q is not the hexadecimal SHA-256 of a payload.", badSignatureMsg, h)}
	}
	pd.declared = strings.ToLower(h)
	if err := pd.check(want, pd.declared); err != nil {
		return nil, err
	}
	pd.verified = true
	return pd, nil
}

// session resolves temporary credentials: the key must be a live session's
// and token its session token.
func (v *Verifier) session(r *http.Request, keyID, token string) (*Session, error) {
	if v.sessions == nil {
		return nil, fmt.Errorf("%w (X-Amz-Security-Token is not accepted here: this server issues no temporary credentials; unset AWS_SESSION_TOKEN)", ErrUnknownKey)
	}
	if token == "" {
		return nil, fmt.Errorf("%w (temporary access key %s needs its session token: set AWS_SESSION_TOKEN)", ErrUnknownKey, keyID)
	}
	sess, err := v.sessions.LookupSession(r.Context(), keyID)
	if err != nil {
		return nil, fmt.Errorf("look up temporary credentials %s: %w", keyID, err)
	}
	if sess == nil {
		return nil, fmt.Errorf("%w (temporary access key %s is not known here, or expired long ago)", ErrUnknownKey, keyID)
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(sess.Token)) != 1 {
		return nil, fmt.Errorf("%w (the session token does not belong to access key %s)", ErrUnknownKey, keyID)
	}
	if now := v.now(); !now.Before(sess.Expiration) {
		return nil, fmt.Errorf("%w (temporary credentials %s expired at %s; get new ones)", ErrExpiredToken, keyID, sess.Expiration.UTC().Format(time.RFC3339))
	}
	return sess, nil
}

// badSignatureMsg is AWS's wording for a signature that does not verify.
const badSignatureMsg = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."

// Identity is the signer, once Begin has verified the signature (requests
// that declared X-Amz-Content-Sha256).
func (pd *Pending) Identity() (Identity, bool) { return pd.id, pd.verified }

// Finish completes the verification with bodyHash, the hexadecimal SHA-256
// of the body as it was read: against the declared X-Amz-Content-Sha256
// when the request sent one, else as the payload hash of the signature.
func (pd *Pending) Finish(bodyHash string) (Identity, error) {
	if pd.verified {
		if bodyHash != pd.declared {
			return Identity{}, &Rejection{Kind: ErrBadSignature, Message: badSignatureMsg + " The body's SHA-256 does not match X-Amz-Content-SHA256."}
		}
		return pd.id, nil
	}
	want, _ := hex.DecodeString(pd.p.signature) // checked by Begin
	hashes := []string{bodyHash}
	if pd.p.presigned && bodyHash == emptyHash {
		// A presigned URL may sign UNSIGNED-PAYLOAD; with no body there is
		// nothing it leaves unsigned.
		hashes = append(hashes, unsignedBody)
	}
	var err error
	for _, h := range hashes {
		if err = pd.check(want, h); err == nil {
			return pd.id, nil
		}
	}
	return Identity{}, err
}

// emptyHash is the SHA-256 of an empty payload.
var emptyHash = sha256Hex(nil)

// check recomputes the signature over payloadHash and compares it with want.
func (pd *Pending) check(want []byte, payloadHash string) error {
	rawPath := requestPath(pd.r)
	// Canonical URI: AWS SDKs and botocore escape the already-escaped path
	// once more for every service but S3; S3-style signers do not. Try the
	// usual form first, the other only when it would differ.
	escapes := []bool{false}
	if needsPathEscape(rawPath) {
		escapes = append(escapes, true)
	}
	for _, disableEscape := range escapes {
		got, err := pd.v.sign(pd.r, pd.p, rawPath, pd.creds, payloadHash, disableEscape)
		if err != nil {
			return err
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrBadSignature
}

// Verify authenticates r with its complete body (already read by the
// caller): Begin with no service check, then Finish.
func (v *Verifier) Verify(r *http.Request, body []byte) (Identity, error) {
	pd, err := v.Begin(r, "")
	if err != nil {
		return Identity{}, err
	}
	return pd.Finish(sha256Hex(body))
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
