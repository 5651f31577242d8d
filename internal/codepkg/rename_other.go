//go:build !linux

package codepkg

import (
	"errors"
	"io/fs"
	"os"
)

// renameNoReplace renames oldpath to newpath unless newpath exists (racy
// where renameat2 is unavailable).
func renameNoReplace(oldpath, newpath string) error {
	if _, err := os.Lstat(newpath); err == nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(oldpath, newpath)
}
