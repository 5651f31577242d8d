package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/lambdaplane/lambdaplane/internal/"

// kernel packages: netlink, nftables and the project's own kernel code.
var kernel = []string{
	"github.com/vishvananda/netlink",
	"github.com/vishvananda/netns",
	"github.com/google/nftables",
	mod + "netdev",
	mod + "nft",
	mod + "sandbox",
}

// Packages that must stay pure (no kernel access, directly or indirectly).
var pure = []string{"cluster", "control", "api", "auth", "sts", "stsapi", "queryxml", "store", "vpc", "iam", "iamapi", "ec2api", "codepkg", "runtimeapi", "runtimes", "logs", "client", "lambdaops", "esm", "destinations", "logsapi", "codeurl", "sqs", "sqsapi"}

func TestControlPlaneNeverImportsKernelCode(t *testing.T) {
	for _, p := range pure {
		out, err := exec.Command("go", "list", "-deps", mod+p).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", p, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, k := range kernel {
				if dep == k || strings.HasPrefix(dep, k+"/") {
					t.Errorf("%s imports %s: kernel code belongs in netdev/nft/sandbox only", p, dep)
				}
			}
		}
	}
}
