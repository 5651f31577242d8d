package codepkg

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Default limits, as AWS Lambda's.
const (
	DefaultMaxZipped   = 50 * 1024 * 1024  // direct upload
	DefaultMaxUnzipped = 250 * 1024 * 1024 // function code plus layers
	DefaultMaxFiles    = 20000
)

const (
	maxSymlinkTarget = 4096 // PATH_MAX
	maxNameLen       = 4096
	maxComponentLen  = 255 // NAME_MAX
	maxSymlinkHops   = 40  // Linux MAXSYMLINKS
)

// Limits bound a package. A zero field takes its default.
type Limits struct {
	MaxZipped   int64 // bytes of the zip file
	MaxUnzipped int64 // bytes of file content after decompression
	MaxFiles    int   // zip entries (files, directories and symlinks)
}

// DefaultLimits returns AWS Lambda's limits: 50 MiB zipped, 250 MiB unzipped,
// 20000 entries.
func DefaultLimits() Limits {
	return Limits{MaxZipped: DefaultMaxZipped, MaxUnzipped: DefaultMaxUnzipped, MaxFiles: DefaultMaxFiles}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxZipped <= 0 {
		l.MaxZipped = d.MaxZipped
	}
	if l.MaxUnzipped <= 0 {
		l.MaxUnzipped = d.MaxUnzipped
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	return l
}

// Info describes a valid package.
type Info struct {
	Sha256   string // base64 of the SHA-256 of the zip bytes (Lambda's CodeSha256)
	Size     int64  // bytes of the zip
	Unzipped int64  // bytes of file content after decompression
}

type kind int

const (
	kindFile kind = iota
	kindDir
	kindSymlink
)

type entry struct {
	f      *zip.File
	name   string // cleaned, slash-separated, relative, no trailing slash
	kind   kind
	perm   fs.FileMode // files: 0644 or 0755
	target string      // symlinks
}

// Inspect validates zipBytes without writing anything: it decompresses every
// entry to count the real unzipped size and verify checksums.
func Inspect(zipBytes []byte, l Limits) (Info, error) {
	l = l.withDefaults()
	entries, err := plan(zipBytes, l)
	if err != nil {
		return Info{}, err
	}
	budget := l.MaxUnzipped
	buf := getBuf()
	defer putBuf(buf)
	for _, e := range entries {
		if e.kind != kindFile {
			continue
		}
		if err := copyEntry(io.Discard, e, &budget, l.MaxUnzipped, *buf); err != nil {
			return Info{}, err
		}
	}
	return newInfo(zipBytes, l.MaxUnzipped-budget), nil
}

// Extract validates zipBytes and unpacks it into dest, which must not exist
// (its parent must). It unpacks into dest+".tmp-XXXX" and renames that to
// dest when done, so dest either appears complete or not at all.
func Extract(zipBytes []byte, dest string, l Limits) (_ Info, err error) {
	l = l.withDefaults()
	if _, err := os.Lstat(dest); err == nil {
		return Info{}, fmt.Errorf("codepkg: extract to %s: %w", dest, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("codepkg: extract to %s: %w", dest, err)
	}
	entries, err := plan(zipBytes, l)
	if err != nil {
		return Info{}, err
	}

	dest = filepath.Clean(dest)
	tmp, err := os.MkdirTemp(filepath.Dir(dest), filepath.Base(dest)+".tmp-")
	if err != nil {
		return Info{}, fmt.Errorf("codepkg: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return Info{}, fmt.Errorf("codepkg: %w", err)
	}
	defer root.Close()

	w := &writer{root: root, made: map[string]bool{".": true}}
	budget := l.MaxUnzipped
	buf := getBuf()
	defer putBuf(buf)
	// Symlinks last: nothing is ever written through one (plan also rejects
	// entries below a symlink).
	for _, e := range entries {
		switch e.kind {
		case kindDir:
			err = w.mkdirAll(e.name)
		case kindFile:
			err = w.file(e, &budget, l.MaxUnzipped, *buf)
		}
		if err != nil {
			return Info{}, err
		}
	}
	for _, e := range entries {
		if e.kind == kindSymlink {
			if err = w.symlink(e); err != nil {
				return Info{}, err
			}
		}
	}
	if err = os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return Info{}, fmt.Errorf("codepkg: %w", err)
	}
	if err = renameNoReplace(tmp, dest); err != nil {
		return Info{}, fmt.Errorf("codepkg: move package into place: %w", err)
	}
	return newInfo(zipBytes, l.MaxUnzipped-budget), nil
}

func newInfo(zipBytes []byte, unzipped int64) Info {
	sum := sha256.Sum256(zipBytes)
	return Info{
		Sha256:   base64.StdEncoding.EncodeToString(sum[:]),
		Size:     int64(len(zipBytes)),
		Unzipped: unzipped,
	}
}

// plan validates the archive's structure: limits on size and count, every
// name, entry types, conflicts, and symlink targets. It decompresses only
// symlink targets.
func plan(zipBytes []byte, l Limits) ([]entry, error) {
	if int64(len(zipBytes)) > l.MaxZipped {
		return nil, errZippedTooLarge(l.MaxZipped)
	}
	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // names are checked below
		return nil, invalid(ReasonNotZip, "", "upload a .zip archive (not .tar.gz, .jar-in-zip or a truncated upload)", err)
	}
	if len(zr.File) > l.MaxFiles {
		return nil, errTooManyFiles(l.MaxFiles)
	}

	entries := make([]entry, 0, len(zr.File))
	kinds := make(map[string]kind, len(zr.File))
	for _, f := range zr.File {
		e, skip, err := classify(f)
		if err != nil {
			return nil, err
		}
		if skip {
			continue
		}
		if prev, ok := kinds[e.name]; ok && !(prev == kindDir && e.kind == kindDir) {
			return nil, invalid(ReasonDuplicate, f.Name, "the archive holds this path twice; re-create it so each path appears once", nil)
		}
		kinds[e.name] = e.kind
		entries = append(entries, e)
	}

	// No entry may sit below a file or a symlink: writing it would fail or
	// go through the link.
	for _, e := range entries {
		for p := path.Dir(e.name); p != "."; p = path.Dir(p) {
			if k, ok := kinds[p]; ok && k != kindDir {
				what := "a file"
				if k == kindSymlink {
					what = "a symlink"
				}
				return nil, invalid(ReasonPathConflict, e.f.Name,
					"its parent "+p+" is "+what+" in the archive; put the entry under a real directory", nil)
			}
		}
	}

	links := map[string]string{}
	for i := range entries {
		e := &entries[i]
		if e.kind != kindSymlink {
			continue
		}
		target, err := readSymlink(e.f)
		if err != nil {
			return nil, err
		}
		e.target = target
		links[e.name] = target
	}
	for _, e := range entries {
		if e.kind == kindSymlink {
			if err := checkSymlink(e, links); err != nil {
				return nil, err
			}
		}
	}
	return entries, nil
}

// classify validates one entry's name, type and encoding.
func classify(f *zip.File) (e entry, skip bool, err error) {
	raw := f.Name
	name, isDir, err := cleanName(raw)
	if err != nil {
		return e, false, err
	}
	if f.Flags&0x1 != 0 {
		return e, false, invalid(ReasonEncrypted, raw, "password-protected zips are not supported; zip the package without encryption", nil)
	}
	if f.Method != zip.Store && f.Method != zip.Deflate {
		return e, false, invalid(ReasonCompression, raw,
			fmt.Sprintf("method %d is not supported; use deflate or store (the zip tool's defaults)", f.Method), nil)
	}

	// Unix mode lives in the high 16 bits of the external attributes. Zips
	// made on Windows usually have none: then the entry is a regular file
	// (or a directory, by its trailing slash) with mode 0644.
	unix := f.ExternalAttrs >> 16
	const (
		sIFMT  = 0o170000
		sIFDIR = 0o040000
		sIFREG = 0o100000
		sIFLNK = 0o120000
	)
	switch typ := unix & sIFMT; {
	case typ == sIFLNK:
		if isDir {
			return e, false, invalid(ReasonInvalidPath, raw, "a symlink entry must not end in '/'", nil)
		}
		e.kind = kindSymlink
	case typ == sIFDIR || isDir:
		if typ != 0 && typ != sIFDIR && typ != sIFREG {
			return e, false, invalid(ReasonUnsupportedType, raw, "only regular files, directories and symlinks may be packaged", nil)
		}
		e.kind = kindDir
	case typ == 0 || typ == sIFREG:
		e.kind = kindFile
		e.perm = 0o644
		if unix&0o111 != 0 {
			e.perm = 0o755
		}
	default:
		return e, false, invalid(ReasonUnsupportedType, raw,
			"device files, FIFOs and sockets cannot be packaged; remove the entry", nil)
	}
	if name == "." {
		if e.kind != kindDir {
			return e, false, invalid(ReasonInvalidPath, raw, "only a directory may name the package root", nil)
		}
		return e, true, nil
	}
	e.f, e.name = f, name
	return e, false, nil
}

// cleanName validates a raw entry name and returns it cleaned.
func cleanName(raw string) (name string, isDir bool, err error) {
	switch {
	case raw == "":
		return "", false, invalid(ReasonInvalidPath, raw, "an entry has an empty name; re-create the zip", nil)
	case len(raw) > maxNameLen:
		return "", false, invalid(ReasonInvalidPath, raw, "the path is longer than 4096 bytes", nil)
	case strings.IndexByte(raw, 0) >= 0:
		return "", false, invalid(ReasonInvalidPath, raw, "the name contains a NUL byte; re-create the zip", nil)
	case strings.IndexByte(raw, '\\') >= 0:
		return "", false, invalid(ReasonInvalidPath, raw,
			"the name contains a backslash; create the zip with forward slashes (e.g. with zip, 7-Zip or PowerShell 7's Compress-Archive, not Windows PowerShell 5)", nil)
	case raw[0] == '/':
		return "", false, invalid(ReasonAbsolute, raw, fixRezip, nil)
	case len(raw) >= 2 && raw[1] == ':' && isASCIILetter(raw[0]):
		return "", false, invalid(ReasonAbsolute, raw, "the name starts with a Windows drive letter; "+fixRezip, nil)
	}
	isDir = strings.HasSuffix(raw, "/")
	name = path.Clean(raw)
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", false, invalid(ReasonTraversal, raw, "the path leads outside the package; "+fixRezip, nil)
	}
	for c := range strings.SplitSeq(name, "/") {
		if len(c) > maxComponentLen {
			return "", false, invalid(ReasonInvalidPath, raw, "a path component is longer than 255 bytes", nil)
		}
	}
	return name, isDir, nil
}

func isASCIILetter(b byte) bool { return 'a' <= b|0x20 && b|0x20 <= 'z' }

func readSymlink(f *zip.File) (string, error) {
	var b bytes.Buffer
	budget := int64(maxSymlinkTarget)
	e := entry{f: f}
	if err := copyEntry(&b, e, &budget, maxSymlinkTarget, make([]byte, 512)); err != nil {
		var ce *Error
		if errors.As(err, &ce) && errors.Is(ce, ErrTooLarge) {
			return "", invalid(ReasonInvalidPath, f.Name, "the symlink target is longer than 4096 bytes", nil)
		}
		return "", err
	}
	t := b.String()
	switch {
	case t == "" || strings.IndexByte(t, 0) >= 0:
		return "", invalid(ReasonInvalidPath, f.Name, "the symlink target is empty or contains a NUL byte", nil)
	case t[0] == '/' || strings.IndexByte(t, '\\') >= 0 || (len(t) >= 2 && t[1] == ':' && isASCIILetter(t[0])):
		return "", invalid(ReasonSymlinkEscape, f.Name,
			"the target "+t+" is absolute; make it relative to the link's directory and inside the package (ln -s ../lib/x.so x.so)", nil)
	}
	return t, nil
}

// checkSymlink resolves e's target the way the kernel would inside the
// unpacked package, following the archive's other symlinks, and rejects it
// if any step leaves the package root.
func checkSymlink(e entry, links map[string]string) error {
	var stack []string // resolved directory components from the package root
	if d := path.Dir(e.name); d != "." {
		stack = strings.Split(d, "/")
	}
	pending := strings.Split(e.target, "/")
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return invalid(ReasonSymlinkEscape, e.f.Name,
					"the target "+e.target+" resolves outside the package; point it at a path inside the package or copy the file in", nil)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		t, ok := links[strings.Join(stack, "/")]
		if !ok {
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return invalid(ReasonSymlinkLoop, e.f.Name, "the target "+e.target+" goes through a symlink cycle; break the cycle", nil)
		}
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(t, "/"), pending...)
	}
	return nil
}

// copyEntry decompresses f into dst, charging the bytes to *budget (what is
// left of limit). It trusts no header: the data is decompressed from the raw
// stream, counted as it is produced, and checked against the header's size
// and CRC-32 afterwards.
func copyEntry(dst io.Writer, e entry, budget *int64, limit int64, buf []byte) error {
	f := e.f
	raw, err := f.OpenRaw()
	if err != nil {
		return invalid(ReasonCorrupt, f.Name, "the archive is damaged; re-create it", err)
	}
	var src io.Reader = raw
	if f.Method == zip.Deflate {
		fr := flate.NewReader(raw)
		defer fr.Close()
		src = fr
	}
	hw := &hashWriter{w: dst, h: crc32.NewIEEE()}
	n, err := io.CopyBuffer(hw, io.LimitReader(src, *budget+1), buf)
	if hw.err != nil {
		return fmt.Errorf("codepkg: write %s: %w", f.Name, hw.err)
	}
	if n > *budget {
		return errUnzippedTooLarge(limit, f.Name)
	}
	*budget -= n
	if err != nil {
		return invalid(ReasonCorrupt, f.Name, "the compressed data is damaged; re-create the zip", err)
	}
	if uint64(n) != f.UncompressedSize64 {
		return invalid(ReasonCorrupt, f.Name,
			fmt.Sprintf("it unpacks to %d bytes but its header says %d; re-create the zip", n, f.UncompressedSize64), nil)
	}
	if hw.h.Sum32() != f.CRC32 {
		return invalid(ReasonCorrupt, f.Name, "its CRC-32 does not match; re-create the zip", nil)
	}
	return nil
}

type hashWriter struct {
	w   io.Writer
	h   hash.Hash32
	err error
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64*1024); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// writer creates the package's files beneath root.
type writer struct {
	root *os.Root
	made map[string]bool // directories created (or the root, ".")
}

// mkdirAll creates name and its parents, each 0755 regardless of umask.
func (w *writer) mkdirAll(name string) error {
	if w.made[name] {
		return nil
	}
	if err := w.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := w.root.Mkdir(name, 0o755); err != nil {
		return fmt.Errorf("codepkg: create directory %s: %w", name, err)
	}
	if err := w.root.Chmod(name, 0o755); err != nil {
		return fmt.Errorf("codepkg: %w", err)
	}
	w.made[name] = true
	return nil
}

func (w *writer) file(e entry, budget *int64, limit int64, buf []byte) error {
	if err := w.mkdirAll(path.Dir(e.name)); err != nil {
		return err
	}
	f, err := w.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.perm)
	if err != nil {
		return fmt.Errorf("codepkg: create %s: %w", e.name, err)
	}
	err = copyEntry(f, e, budget, limit, buf)
	if err == nil {
		err = f.Chmod(e.perm) // exact mode, whatever the umask
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("codepkg: write %s: %w", e.name, cerr)
	}
	return err
}

func (w *writer) symlink(e entry) error {
	if err := w.mkdirAll(path.Dir(e.name)); err != nil {
		return err
	}
	if err := w.root.Symlink(e.target, e.name); err != nil {
		return fmt.Errorf("codepkg: create symlink %s: %w", e.name, err)
	}
	return nil
}
