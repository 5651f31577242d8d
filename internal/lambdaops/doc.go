// Package lambdaops is the Lambda REST API's routing table: every operation
// of the current Lambda model (generated from the aws-sdk-go-v2 module in
// go.mod, see gen.py) with its method and URI template, and Match, which
// names the operation of a request and extracts its path labels.
//
// The API front uses it for operation names (metrics labels, IAM actions)
// and lambdaapi for dispatch, so the two never disagree, and an operation
// lambdaplane does not serve is answered by name. Pure: no I/O.
package lambdaops
