// Package sqs_test tests the SQS-compatible API end to end: /usr/bin/aws
// and boto3 (Query protocol), aws-sdk-go-v2 (JSON protocol).
package sqs_test

import (
	"os"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
