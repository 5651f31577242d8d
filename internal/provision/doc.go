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
// In a cluster the environments live on the lease holder; invokes that the
// placement routes to another host run on that host's on-demand
// environments.
package provision
