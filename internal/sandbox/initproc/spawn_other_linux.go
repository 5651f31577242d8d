//go:build linux && !amd64

package initproc

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// spawnFunction forks the function's process with Go's ForkExec (a full
// fork: Go gives up vfork for a new user namespace, writing the child's
// id maps from here while it waits). amd64 has the vfork path of
// vfork_linux_amd64.go.
func spawnFunction(p *Params, path string) (int, error) {
	return syscall.ForkExec(path, p.Argv, &syscall.ProcAttr{
		Dir:   "/var/task",
		Env:   p.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Chroot:      FnRoot,
			Cloneflags:  unix.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: p.UID, HostID: p.HostUID, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: p.GID, HostID: p.HostGID, Size: 1}},
			Credential:  &syscall.Credential{Uid: uint32(p.UID), Gid: uint32(p.GID), NoSetGroups: true},
		},
	})
}
