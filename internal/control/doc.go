// Package control owns the function lifecycle: validation of what users
// send, durable function/version/alias records, code packages, reserved
// concurrency, and resolving an invoke target (name, partial ARN or ARN with
// an optional qualifier) to an immutable configuration. It never touches the
// kernel; the invoke layer does.
package control
