// Package provision keeps provisioned concurrency: for every configuration
// stored by the control plane (control.ProvisionedConfig) one host, the
// holder of the configuration's lease in the "provisioned_leases" bucket
// (taken when absent or expired, renewed every 2 s, valid 6 s), has the
// scheduler keep that many environments of the qualifier's version
// initialized (invoke.Scheduler.SetProvisioned), replaces those that die,
// follows an alias to its new version, and writes the status back
// (IN_PROGRESS, READY with Available = Requested, or FAILED with the init
// failure). A configuration deleted, or a lease lost, releases them.
//
// In a cluster only the function's home (the first live host of its
// ranking, where placement sends its synchronous invokes) takes the lease,
// and a host that stops being home releases it on its next pass, so the
// provisioned environments are where the invokes run.
package provision
