// Package harness starts lambdaplane servers for end-to-end tests: it builds
// the binaries and the probe function once per test binary, makes a network
// namespace standing in for the internet, and gives each test a server with
// its own data directory, kernel prefix, service CIDR and uplink net, plus
// clients (aws-sdk-go-v2 and Debian's /usr/bin/aws) signed for it.
//
// Every end-to-end package (internal/e2e and the feature packages beside it)
// calls Main from its TestMain; packages run in parallel, so nothing here
// may assume it is the only test server on the machine.
package harness
