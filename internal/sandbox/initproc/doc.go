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
//  4. marks every inherited descriptor close-on-exec and closes the received
//     ones, and
//  5. clones the function's process into a user namespace of its own
//     (startFunction; on amd64 with CLONE_VFORK|CLONE_VM, the child writing
//     its own id maps: spawnFunction in vfork_linux_amd64.go): only its
//     uid/gid (993 by default) is mapped, to the
//     environment's own host uid/gid (Params.HostUID/HostGID), it is
//     chrooted into FnRoot inside the init's root, and it runs with
//     no_new_privs and the seccomp filter of seccomp_linux.go (modelled on
//     Docker's default profile). It has no capability after its exec.
//
// The init stays as pid 1 of the namespace, reaping whatever is reparented
// to it, until the function ends.
//
// Progress is reported on descriptor 3: "ready" once the common root is
// built (and the seccomp filter assembled), then one line
// "ok <t0> <t1> <t2> <t3> <t4>" (CLOCK_MONOTONIC nanoseconds: main entered,
// parameters received, cgroups joined, root built, before the fork) once the
// function's command has been exec'd, or "err <code> <message>" on
// failure, after which the process exits with that code; finally
// "exit <wait status>" when the function ends, after which the init exits
// too (and the kernel ends everything else in the namespace).
//
// The package imports only the standard library, golang.org/x/sys/unix and
// the pure-Go seccomp filter builder github.com/elastic/go-seccomp-bpf, so
// the helper binary stays static and small and starts in about a
// millisecond.
package initproc
