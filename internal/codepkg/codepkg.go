package codepkg

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits bound a package.
type Limits struct {
	MaxZipped   int64 // bytes of the zip itself
	MaxUnzipped int64 // bytes written when extracted
	MaxFiles    int
}

// DefaultLimits are Lambda's: 50 MB zipped, 250 MB unzipped.
func DefaultLimits() Limits {
	return Limits{MaxZipped: 50 * 1024 * 1024, MaxUnzipped: 250 * 1024 * 1024, MaxFiles: 20000}
}

// Info describes a package.
type Info struct {
	Sha256   string // base64 SHA-256 of the zip bytes (Lambda's CodeSha256)
	Size     int64  // zip bytes
	Unzipped int64  // bytes the files take when extracted
}

// Error is a rejected package; Entry names the offending zip entry.
type Error struct {
	Reason string
	Entry  string
}

func (e *Error) Error() string {
	if e.Entry == "" {
		return e.Reason
	}
	return fmt.Sprintf("%s: %q (rebuild the zip without it)", e.Reason, e.Entry)
}

// Inspect validates a package without writing anything.
func Inspect(zipBytes []byte, l Limits) (Info, error) {
	return walk(zipBytes, l, "")
}

// Extract validates and writes a package to dest (which must not exist)
// atomically: into a temporary sibling first, renamed at the end.
func Extract(zipBytes []byte, dest string, l Limits) (Info, error) {
	if _, err := os.Lstat(dest); err == nil {
		return Info{}, fmt.Errorf("extract: %s already exists", dest)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), filepath.Base(dest)+".tmp-")
	if err != nil {
		return Info{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return Info{}, err
	}
	info, err := walk(zipBytes, l, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return info, err
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.RemoveAll(tmp)
		if _, statErr := os.Stat(dest); statErr == nil {
			return info, nil // another extraction of the same package won
		}
		return info, err
	}
	return info, nil
}

// cleanName validates an entry name and returns it relative and clean.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", &Error{Reason: "empty entry name"}
	}
	if strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", &Error{Reason: "entry name contains a backslash or NUL", Entry: name}
	}
	if strings.HasPrefix(name, "/") || (len(name) > 1 && name[1] == ':') {
		return "", &Error{Reason: "absolute path", Entry: name}
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", &Error{Reason: "path traversal", Entry: name}
	}
	return c, nil
}

// limitedWriter fails once more than remaining bytes are written.
type limitedWriter struct {
	w         io.Writer
	remaining *int64
	max       int64
}

func (lw limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > *lw.remaining {
		return 0, &Error{Reason: fmt.Sprintf("unzipped size exceeds %d bytes", lw.max)}
	}
	*lw.remaining -= int64(len(p))
	return lw.w.Write(p)
}

func walk(zipBytes []byte, l Limits, dest string) (Info, error) {
	sum := sha256.Sum256(zipBytes)
	info := Info{Sha256: base64.StdEncoding.EncodeToString(sum[:]), Size: int64(len(zipBytes))}
	if l.MaxZipped > 0 && info.Size > l.MaxZipped {
		return info, &Error{Reason: fmt.Sprintf("zipped size %d exceeds %d bytes", info.Size, l.MaxZipped)}
	}
	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	if err != nil {
		return info, &Error{Reason: "not a zip file: " + err.Error()}
	}
	if l.MaxFiles > 0 && len(zr.File) > l.MaxFiles {
		return info, &Error{Reason: fmt.Sprintf("too many files: %d (at most %d)", len(zr.File), l.MaxFiles)}
	}
	remaining := l.MaxUnzipped
	if remaining <= 0 {
		remaining = 1 << 62
	}
	for _, f := range zr.File {
		name, err := cleanName(f.Name)
		if err != nil {
			return info, err
		}
		mode := f.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			rc, err := f.Open()
			if err != nil {
				return info, &Error{Reason: "unreadable entry: " + err.Error(), Entry: f.Name}
			}
			target, err := io.ReadAll(io.LimitReader(rc, 4096))
			rc.Close()
			if err != nil {
				return info, &Error{Reason: "unreadable entry: " + err.Error(), Entry: f.Name}
			}
			t := string(target)
			if strings.HasPrefix(t, "/") || strings.Contains(t, "\\") {
				return info, &Error{Reason: "symlink escapes package", Entry: f.Name}
			}
			resolved := path.Clean(path.Join(path.Dir(name), t))
			if resolved == ".." || strings.HasPrefix(resolved, "../") {
				return info, &Error{Reason: "symlink escapes package", Entry: f.Name}
			}
			if dest != "" {
				p := filepath.Join(dest, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return info, err
				}
				if err := safeParent(dest, p); err != nil {
					return info, err
				}
				if err := os.Symlink(t, p); err != nil {
					return info, &Error{Reason: "cannot create symlink: " + err.Error(), Entry: f.Name}
				}
			}
		case mode.IsDir() || strings.HasSuffix(f.Name, "/"):
			if dest != "" {
				p := filepath.Join(dest, name)
				if err := safeParent(dest, p); err != nil {
					return info, err
				}
				if err := os.MkdirAll(p, 0o755); err != nil {
					return info, err
				}
			}
		case mode.IsRegular():
			perm := os.FileMode(0o644)
			if mode.Perm()&0o111 != 0 {
				perm = 0o755
			}
			rc, err := f.Open()
			if err != nil {
				return info, &Error{Reason: "unreadable entry: " + err.Error(), Entry: f.Name}
			}
			var w io.Writer = io.Discard
			var out *os.File
			if dest != "" {
				p := filepath.Join(dest, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					rc.Close()
					return info, err
				}
				if err := safeParent(dest, p); err != nil {
					rc.Close()
					return info, err
				}
				out, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
				if err != nil {
					rc.Close()
					return info, &Error{Reason: "duplicate or unwritable entry: " + err.Error(), Entry: f.Name}
				}
				w = out
			}
			n, err := io.Copy(limitedWriter{w: w, remaining: &remaining, max: l.MaxUnzipped}, rc)
			rc.Close()
			if out != nil {
				if cerr := out.Close(); err == nil {
					err = cerr
				}
				_ = os.Chmod(out.Name(), perm)
			}
			info.Unzipped += n
			if err != nil {
				if e, ok := err.(*Error); ok {
					return info, e
				}
				return info, &Error{Reason: "corrupt entry: " + err.Error(), Entry: f.Name}
			}
		default:
			return info, &Error{Reason: "unsupported file type (device, pipe or socket)", Entry: f.Name}
		}
	}
	return info, nil
}

// safeParent refuses to write through a symlinked directory created by an
// earlier entry (a symlink "a" -> "." followed by "a/../../x" is caught by
// cleanName; this catches "dir" -> "sub" followed by writes under "dir/").
func safeParent(root, p string) error {
	rel, err := filepath.Rel(root, filepath.Dir(p))
	if err != nil {
		return err
	}
	cur := root
	if rel == "." {
		return nil
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return &Error{Reason: "entry is written through a symlink", Entry: strings.TrimPrefix(p, root+"/")}
		}
	}
	return nil
}
