// Package auth holds accounts and their access keys and verifies AWS
// Signature Version 4 on every API request (header and presigned-query
// forms), recomputing the signature with the aws-sdk-go-v2 signer.
//
// Accounts (NewAccounts) keeps account records in the "accounts" bucket and
// claims access key ids in the "accesskeys" bucket; the key → account map
// used on every request lives in memory, kept current by a KV watch, so
// verification never touches the store. EnsureFirst creates the first
// account exactly once however many processes race for it, and
// WriteCredentialsFile writes it for the AWS CLI and SDKs.
//
// Verifier.Begin authenticates a request from its headers alone (signature
// form, credential scope against the server's region and the endpoint's
// service, key, date, and the signature itself over a declared
// X-Amz-Content-Sha256, UNSIGNED-PAYLOAD refused), so that nothing of a
// body is read for a request that cannot be valid; Pending.Finish
// completes it with the body's SHA-256. Verifier.Verify does both for a
// body already read. Errors wrap one of ErrMissingAuth, ErrMalformedAuth,
// ErrUnknownKey, ErrClockSkew, ErrPresignedExpired, ErrBadSignature (a
// *Rejection carries AWS's message, e.g. for a wrong scope); each service
// maps those to its own wire error.
//
// Known limits of recomputing with the SDK signer: a client that signs
// "content-length: 0" or an ignored header (user-agent, expect,
// x-amzn-trace-id, transfer-encoding) cannot be verified; neither the AWS
// SDKs nor botocore do either. Temporary credentials (an ASIA… key and
// X-Amz-Security-Token) are accepted when the Verifier has a SessionLookup
// (SetSessions: the STS sessions in the store) until they expire
// (ErrExpiredToken); chunked (STREAMING-*) payload signing and
// SigV4a are not supported.
package auth
