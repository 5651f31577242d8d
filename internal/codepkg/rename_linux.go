package codepkg

import "golang.org/x/sys/unix"

// renameNoReplace renames oldpath to newpath, failing with EEXIST if newpath
// exists (rename(2) would silently replace an empty directory).
func renameNoReplace(oldpath, newpath string) error {
	return unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
}
