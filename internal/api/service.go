package api

import (
	"net/http"

	"github.com/lambdaplane/lambdaplane/internal/auth"
)

// Service is one AWS service served on the shared endpoint (lambda, ec2,
// iam). The front verifies SigV4 and reads the body before calling it; the
// service writes its own wire format (Lambda JSON, EC2/IAM XML), including
// errors.
type Service interface {
	// Name is the SigV4 credential-scope service name ("lambda", "ec2", "iam").
	Name() string
	// ServeAWS handles one verified request. body is the whole request body.
	ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte)
	// WriteError writes err (an authentication failure or a request the front
	// rejected) in the service's own error format.
	WriteError(w http.ResponseWriter, r *http.Request, err error)
}
