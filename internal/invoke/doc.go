// Package invoke schedules invocations onto execution environments: a warm
// pool per function version and revision (one invoke per environment at a
// time), cold starts built from ordered lifecycle hooks (network namespace
// from the pool, Runtime API listener inside it, sandboxed process), reserved
// and account concurrency limits, idle reaping, and asynchronous (Event)
// invokes through a durable JetStream work queue with retries.
package invoke
