// Package codeurl makes and checks the presigned URLs that GetFunction's
// Code.Location and GetLayerVersion's Content.Location carry: a path on
// the API endpoint naming a stored zip (by kind and SHA-256 key), an
// expiry, and an HMAC-SHA256 over both with a secret kept in the store, so
// any server of a cluster checks a URL another one signed. Handler serves
// the zip to whoever holds a valid URL (no SigV4: the URL is the
// credential, as an S3 presigned URL is) and refuses an expired or
// altered one with an S3-style XML error.
package codeurl
