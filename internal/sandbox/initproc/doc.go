// Package initproc is the first process of every execution environment: the
// body of cmd/lambdaplane-init.
//
// The sandbox manager starts it with new mount, pid, ipc and uts namespaces,
// possibly ahead of time (a warm pool), with the environment-independent
// [Base] in EnvVar. It makes every mount private, builds that part of the
// new root on a tmpfs at Base.Root (read-only binds of the host's system
// directories, symlinks such as /bin -> usr/bin replicated as symlinks,
// /proc, a minimal /dev, empty mountpoints), pivots into it and detaches
// the host's tree (the costly part, done before anyone waits), reports
// "ready", and blocks on ControlFD for its [Params] and the descriptors
// they name: optionally a network namespace and an output pipe, the
// environment's open cgroup.procs files, and detached read-only mount trees
// (open_tree clones made by the manager) for /var/task, /opt and
// /var/runtime. Then it
//
//  1. joins the network namespace if one was passed, and the environment's
//     cgroups (writes "0" to each cgroup.procs),
//  2. moves the trees into place, mounts a sized /tmp and /dev/shm,
//  3. sets the hostname and remounts the root and /dev read-only,
//  4. marks every inherited descriptor close-on-exec, sets no_new_privs,
//     empties the capability bounding and ambient sets, drops supplementary
//     groups and switches to the unprivileged uid/gid,
//  5. execs the function's command, which becomes pid 1 of the namespace.
//
// Progress is reported on descriptor 3 (close-on-exec): one line
// "ok <t0> <t1> <t2> <t3> <t4>" (CLOCK_MONOTONIC nanoseconds: main entered,
// parameters received, cgroups joined, root built, about to exec) just
// before execve, or "err <code> <message>" on failure, after which the
// process exits with that code. End of file without an "err" line therefore means execve succeeded.
//
// The package imports only the standard library and golang.org/x/sys/unix so
// the helper binary stays small and starts in about a millisecond.
package initproc
