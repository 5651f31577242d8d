// Package e2e holds lambdaplane's end-to-end tests: a real server (in
// process, or as the built binary for restart tests) driven by Debian's
// /usr/bin/aws and by aws-sdk-go-v2, running unmodified aws-lambda-go
// functions in real sandboxes.
package e2e
