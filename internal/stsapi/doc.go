// Package stsapi serves the STS Query API subset (version 2011-06-15, SigV4
// service "sts", form-encoded requests, XML responses in the
// https://sts.amazonaws.com/doc/2011-06-15/ namespace) on top of
// internal/sts: GetCallerIdentity, AssumeRole and GetSessionToken. Errors
// are STS's <ErrorResponse><Error><Type>Sender</Type><Code>…</Code>….
package stsapi
