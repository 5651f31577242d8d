// Package api is lambdaplane's HTTP front: one endpoint for every service.
// It reads the body (bounded), finds the service from the SigV4 credential
// scope (or, for unsigned requests, from the shape of the request), verifies
// the signature and hands the request to that service, which answers in its
// own wire format. It also serves /_lambdaplane/health and /metrics.
package api
