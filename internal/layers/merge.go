// Package layers builds the /opt tree of an execution environment from a
// function's ordered list of layers, as Lambda does: each layer's content is
// unpacked over the previous ones, so a file in a later layer replaces the
// same path in an earlier one.
//
// Layer contents are unpacked once per host (by codepkg, under
// DATA/layers/content/<sha>) and never modified afterwards; a merged tree is
// built once per distinct ordered list (DATA/layers/merged/<hash>) out of
// hard links to those files, in a temporary directory renamed into place when
// complete, so a merged directory either exists whole or not at all.
package layers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// MergedName is the directory name of the merged tree of the given ordered
// content keys (hex SHA-256 of the layer zips).
func MergedName(keys []string) string {
	h := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return hex.EncodeToString(h[:])
}

// Merge builds dest from srcs, in order: later sources override earlier
// ones path by path (a file replaces a file, a symlink or a whole directory
// at the same path; a directory replaces a file or symlink and merges with a
// directory). Files are hard-linked from the sources where possible (copied
// otherwise), so the sources must never be modified afterwards. dest must
// not exist; its parent must. If dest appears meanwhile (another builder
// won), Merge leaves it alone and succeeds.
func Merge(srcs []string, dest string) (err error) {
	dest = filepath.Clean(dest)
	if _, err := os.Lstat(dest); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), filepath.Base(dest)+".tmp-")
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	for _, src := range srcs {
		if err := overlay(src, tmp); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return fmt.Errorf("layers: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		if _, serr := os.Lstat(dest); serr == nil {
			return nil // a concurrent builder put the same tree in place
		}
		return fmt.Errorf("layers: move merged tree into place: %w", err)
	}
	tmp = ""
	return nil
}

// overlay copies the tree src over dst. dst is private to the caller (a
// fresh temporary directory), and every directory on a path is made a real
// directory before anything is placed below it, so nothing is ever written
// through a symlink.
func overlay(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("layers: read %s: %w", p, err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		target := filepath.Join(dst, rel)
		cur, lerr := os.Lstat(target)
		exists := lerr == nil
		switch {
		case d.IsDir():
			if exists && cur.IsDir() {
				return nil
			}
			if exists {
				if err := os.Remove(target); err != nil {
					return fmt.Errorf("layers: %w", err)
				}
			}
			if err := os.Mkdir(target, 0o755); err != nil {
				return fmt.Errorf("layers: %w", err)
			}
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			if exists {
				if err := os.RemoveAll(target); err != nil {
					return fmt.Errorf("layers: %w", err)
				}
			}
			link, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("layers: %w", err)
			}
			if err := os.Symlink(link, target); err != nil {
				return fmt.Errorf("layers: %w", err)
			}
			return nil
		case d.Type().IsRegular():
			if exists {
				if err := os.RemoveAll(target); err != nil {
					return fmt.Errorf("layers: %w", err)
				}
			}
			return linkOrCopy(p, target)
		default:
			return nil // codepkg never produces other types
		}
	})
}

func linkOrCopy(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EMLINK) {
		return fmt.Errorf("layers: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("layers: copy %s: %w", src, err)
	}
	return nil
}
