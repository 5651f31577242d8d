// Package queryxml is the wire layer shared by the AWS services lambdaplane
// serves in the Query protocol (IAM, STS): form-encoded requests (body
// and query string), <ActionResponse><ActionResult> answers and
// <ErrorResponse> errors, each service with its own namespace, error table
// and code for an unexpected failure. It knows nothing of any service's
// operations.
package queryxml
