// Package archtest enforces the dependency direction of DESIGN.md §3: the
// control plane and the API never import kernel-touching code; only
// netdev, nft and sandbox (and what wires them) may; and every package
// stands on a floor (floors_test.go) and imports only from below it.
package archtest
