// Package archtest enforces the dependency direction of DESIGN.md §3: the
// control plane and the API never import kernel-touching code; only
// netdev, nft and sandbox (and what wires them) may.
package archtest
