// Package vpc is the pure model of customer VPCs: VPCs, subnets and their
// IPAM, security groups, network interfaces, route tables, internet and NAT
// gateways, persisted as JetStream KV records (internal/store).
//
// Every record belongs to one account; keys are "<account>.<id>", so another
// account's IDs are simply not found. Operations return *Error values that
// carry the EC2 error code; the API edge (internal/ec2api) writes them.
//
// The model never touches the kernel. Desired computes the state the
// datapath reconciler (netdev/nft) converges to, and Subscribe tells it when
// that state may have changed.
//
// Concurrency: every operation that must be atomic across writers goes
// through a revision-checked store update — subnet address allocation (the
// per-subnet IPAM record), subnet CIDR conflicts (the VPC record holds its
// subnets), security-group rules (the group record) and group names (a
// name-index record created with Create). Dependency checks on delete of
// security groups, route tables and internet gateways are check-then-act.
package vpc
