// Package esm_test tests event source mappings for SQS queues, function
// event invoke configs (destinations) and dead-letter queues end to end.
package esm_test

import (
	"os"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
