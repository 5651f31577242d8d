// Package cluster holds the end-to-end tests of a three-host lambdaplane
// cluster on one machine (issue 14): hosts are `lambdaplane serve`
// processes in network namespaces of their own (clusterharness).
package cluster
