package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

// floors puts every internal package (and the commands) on a floor; a
// package may import only packages on lower floors, so dependencies only
// point down and a cycle of layers cannot form. A new package must be
// given a floor here: the test fails until it has one.
var floors = [][]string{
	// 0: leaves: libraries with no project imports.
	{"client", "cluster", "codepkg", "debounce", "deps", "diskspace", "lambdaops", "layers", "logs", "nft", "lineage", "runtimeapi", "runtimes", "sandbox/initproc"},
	// 1: the kernel (netdev, sandbox) and the store.
	{"netdev", "sandbox", "store"},
	// 2: identities, backups, signed code URLs, the VPC model.
	{"auth", "backup", "codeurl", "vpc"},
	// 3: IAM and the HTTP front.
	{"iam", "api"},
	// 4: domain services on the store, the VPC datapath, the Query wire layer.
	{"control", "sts", "sqs", "datapath", "queryxml"},
	// 5: engines built on them, and the Query/JSON service edges.
	{"destinations", "esm", "hyperplane", "ec2api", "iamapi", "stsapi", "sqsapi", "logsapi"},
	// 6: the scheduler.
	{"invoke"},
	// 7: what drives the scheduler: placement, provisioned concurrency,
	// function URLs, the Lambda API.
	{"placement", "provision", "urls", "lambdaapi"},
	// 8: wiring: the server, and a Lambda instance for tests and tools.
	{"server", "instance"},
	// 9: the benchmark.
	{"bench"},
}

// cmdFloor is above every internal package.
const cmdFloor = 100

func TestDependenciesPointDown(t *testing.T) {
	floor := map[string]int{}
	for i, ps := range floors {
		for _, p := range ps {
			floor[mod+p] = i
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "github.com/lambdaplane/lambdaplane/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := f[0]
		mine, ok := floor[pkg]
		switch {
		case strings.Contains(pkg, "/cmd/"):
			mine = cmdFloor
		case strings.HasPrefix(pkg, mod+"e2e") || pkg == mod+"archtest":
			continue // tests stand on top of everything
		case !ok:
			t.Errorf("%s has no floor: add it to floors in %s/floors_test.go", pkg, "internal/archtest")
			continue
		}
		for _, dep := range f[1:] {
			if !strings.HasPrefix(dep, mod) {
				continue
			}
			df, ok := floor[dep]
			if !ok {
				continue // reported as its own line
			}
			if df >= mine {
				t.Errorf("%s (floor %d) imports %s (floor %d): dependencies must point down; move the shared part to a lower package", strings.TrimPrefix(pkg, mod), mine, strings.TrimPrefix(dep, mod), df)
			}
		}
	}
}
