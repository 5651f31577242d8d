package cluster

import (
	"os"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
