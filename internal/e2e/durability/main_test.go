// Package durability holds the long end-to-end tests of issue 13: SIGKILL
// rounds against a server process under concurrent writes, and the
// create/invoke/delete soak. They run beside internal/e2e (a package of
// their own, so `go test ./...` runs them in parallel with it).
package durability

import (
	"os"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
