// Package api is lambdaplane's HTTP front: one endpoint for every service.
// It finds the service from the SigV4 credential scope (or, for unsigned
// requests, from the shape of the request) and authenticates the request
// from its headers before reading any of its body: a request without a
// valid signature form, scope, key or date is refused at once, in the
// service's own wire format, and its connection closed. The body is then
// read, bounded by its operation's limit and a deadline, through a SHA-256
// that completes the signature check, and handed to the service. It also
// serves /_lambdaplane/health; metrics are served on their own listener,
// not here. LimitUnauthenticated caps the connections that have not yet
// authenticated a request.
package api
