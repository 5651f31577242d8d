// Package client lets lambdaplane's own client subcommands (logs, accounts,
// instance) find and call the server the way the AWS CLI does: explicit
// flags first, then the standard AWS_* variables and shared files, then the
// local server's data directory.
package client
