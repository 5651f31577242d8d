// Package sts issues and resolves temporary credentials, the logic behind
// the STS API subset (internal/stsapi) and the credentials every execution
// environment gets for its function's execution role.
//
// A session (auth.Session: an ASIA… access key id, a secret, a session
// token and an expiration) is one record of the "sts_sessions" bucket,
// keyed by its access key id, written before it is handed out: any server
// sharing the store validates it (Service.LookupSession, read through an
// in-memory cache, since a session record never changes), and the bucket's
// age limit removes records a day and a half old (longer than any session
// lives). A role session acts with exactly its role's identity policies
// (inline and managed), intersected with the session policy AssumeRole was
// given (Service.Authorize); a deleted or re-created role ends its sessions.
//
// AssumeRole follows IAM's rules: the role's trust policy must allow the
// caller (by its own ARN, or by its account, and then the caller's identity
// policies must allow sts:AssumeRole on the role too; always for another
// account's role); account root credentials may not assume roles; chained
// role sessions last at most an hour.
package sts
