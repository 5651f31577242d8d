// Package server assembles a lambdaplane server from its parts — store,
// accounts, network, sandbox, control plane, scheduler and the API front —
// through explicit constructors, and runs it. cmd/lambdaplane's serve and
// the end-to-end tests both start servers through it.
package server
