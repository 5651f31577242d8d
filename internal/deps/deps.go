// Package deps pins modules that only the test functions use: those are
// built from testdata directories (ignored by the go tool's package
// patterns), so without this the module file would drop
// github.com/aws/aws-lambda-go.
package deps

import (
	_ "github.com/aws/aws-lambda-go/lambda"
	_ "github.com/aws/aws-lambda-go/lambdacontext"
)
