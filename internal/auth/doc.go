// Package auth holds accounts and their access keys and verifies AWS
// Signature Version 4 on every API request (header and presigned-query
// forms), recomputing the signature with the aws-sdk-go-v2 signer.
package auth
