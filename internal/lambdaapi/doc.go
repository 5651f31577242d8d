// Package lambdaapi serves the AWS Lambda REST API (2015-03-31 and friends)
// in Lambda's JSON wire format: request decoding, the FunctionConfiguration
// shapes, Invoke's headers, and the one table that maps typed errors to
// Lambda error codes and statuses.
package lambdaapi
