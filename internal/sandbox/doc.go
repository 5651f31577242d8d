// Package sandbox runs one execution environment: a process tree in its own
// mount, pid, ipc and uts namespaces, inside a pre-built network namespace,
// limited by cgroup v1 memory/pids/cpu controllers, with a read-only root
// filesystem and a sized /tmp.
//
// Lifecycle: [Manager.Start] creates the cgroups
// (/sys/fs/cgroup/<ctrl>/<prefix>/<id>), then takes a lambdaplane-init
// helper (package initproc) from the warm pool, or spawns one from a thread
// that has joined the environment's network namespace. The helper receives
// its parameters on a control socket with descriptors attached (when
// pooled, the network namespace; the cgroup.procs files; read-only
// open_tree clones of the code, layer and runtime directories, because the
// helper has already pivoted away from the host's tree), joins the
// namespace and cgroups, moves the trees into its root, and forks the
// function's command into a user namespace of its own, chrooted, with
// no_new_privs and a seccomp filter (package initproc); the init stays
// as pid 1 and reports how the function ended; when it exits the kernel
// kills everything else in the namespace.
//
// Identity. The function runs as Config.UID/GID (993) inside its user
// namespace, where nothing else is mapped; outside that is a host uid and
// gid of its own (hostids_linux.go: each manager claims a block of 65,536
// host ids host-wide and gives each live environment one), so per-uid
// kernel objects and limits (keyrings, inotify, message queues, process
// counts, user namespaces) are per environment. The code, layer and
// runtime trees are read-only and must be world-readable (host root owns
// them; inside they belong to the overflow uid); /tmp and /dev/shm belong
// to the function's uid. Start returns once that exec has happened (or with an
// *InitError if it could not), and records per-phase durations
// ([Env.Phases]). [Env.Destroy] kills, reaps and removes the cgroups; it is
// idempotent. [Manager.Cleanup] removes cgroups under the prefix that belong
// to no live environment (startup reconcile after a crash).
//
// Warm pool. Forking the helper and starting its Go runtime costs ~2 ms on
// a small VM, more than the rest of a start. Config.PoolSize helpers are
// therefore started ahead of time: each creates its namespaces, builds the
// environment-independent part of the root (system directories, /proc,
// /dev), pivots into it and detaches the host's mount tree, reports ready and blocks on its control socket, in the manager's
// own network namespace and cgroups, running nothing but our code. A
// consumed member is replaced in the background; an empty pool falls back
// to forking on demand. As many cgroup sets are kept made too, with a
// 128 MB environment's limits, named pool.<token>.<n>: a start renames
// one to its id (cgroup v1 renames within a parent) and writes only the
// limits its size changes, about 0.1 ms instead of 0.35 ms for making
// them (cgpool_linux.go).
//
// Spawning threads. A child started with Pdeathsig is killed when the OS
// *thread* that forked it exits, and the network namespace is a per-thread
// attribute. The manager therefore forks from a few dedicated goroutines
// that are locked to their threads for the manager's lifetime: each one
// switches into the target namespace, forks, and switches back (verified by
// inode). A thread whose restore fails is parked, never reused or ended, so
// neither a stray namespace nor an unexpected SIGKILL can leak.
//
// Requirements: root, cgroup v1 memory, pids and cpu hierarchies at
// /sys/fs/cgroup, kernel ≥ 5.11 (close_range; mount_setattr is used when
// present). NewManager remounts the cgroup hierarchy with favordynmods
// unless Config.KeepCgroupMountOptions is set: without it every cgroup
// join waits for an RCU grace period (~10 ms). Code, opt and runtime directories must be
// world-readable: the environment sees them read-only at /var/task, /opt
// and /var/runtime. Pages written to /tmp and /dev/shm are
// charged to the environment's memory cgroup.
package sandbox
