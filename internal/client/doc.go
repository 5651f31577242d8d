// Package client lets lambdaplane's own client subcommands (logs, accounts,
// instance, bench --endpoint-url) find and call the server the way the AWS
// CLI does: explicit flags first, then the standard AWS_* variables and the
// shared credentials file, then the local server's data directory. It never
// uses the AWS SDK's default credential chain (instance metadata, SSO,
// credential processes) or AWS's public endpoints: a client command sends
// nothing anywhere but to the endpoint it was given or found locally.
package client
