//go:build linux

// Command lambdaplane-init is the first process of an execution environment.
// The sandbox manager starts it inside fresh namespaces; it builds the root
// filesystem, drops privileges and execs the function's bootstrap. It is not
// meant to be run by hand. See internal/sandbox/initproc.
package main

import "github.com/lambdaplane/lambdaplane/internal/sandbox/initproc"

func main() { initproc.Main() }
