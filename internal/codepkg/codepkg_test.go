package codepkg

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

type ent struct {
	name string
	data string
	mode os.FileMode
}

// mkzip builds a zip the way Info-ZIP on Linux would (unix modes).
func mkzip(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawEnt is an entry written with CreateRaw: every header field is ours,
// including lies.
type rawEnt struct {
	hdr  zip.FileHeader
	data []byte // written as is (already compressed if Method is Deflate)
}

func mkrawzip(t testing.TB, ents ...rawEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		w, err := zw.CreateRaw(&h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func deflate(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	fw.Write(b)
	fw.Close()
	return buf.Bytes()
}

// honest returns a stored raw entry with correct sizes and CRC.
func honest(name string, data []byte, externalAttrs uint32, creator uint16) rawEnt {
	return rawEnt{hdr: zip.FileHeader{
		Name: name, Method: zip.Store, CreatorVersion: creator<<8 | 20, ExternalAttrs: externalAttrs,
		CRC32: crc32.ChecksumIEEE(data), CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data)),
	}, data: data}
}

const (
	creatorFAT  = 0
	creatorUnix = 3
)

func perm(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestExtractTreeModesAndInfo(t *testing.T) {
	old := syscall.Umask(0o077) // modes must not depend on the umask
	defer syscall.Umask(old)

	z := mkzip(t,
		ent{"bootstrap", "#!/bin/sh\n", 0o755},
		ent{"lib/", "", os.ModeDir | 0o700},
		ent{"lib/data.txt", "hello", 0o600},
		ent{"a/b/c/deep.txt", "deep", 0o644}, // parents implicit
		ent{"bin/tool", "ELF", 0o4775},       // setuid dropped, exec kept
		ent{"link", "lib/data.txt", os.ModeSymlink | 0o777},
		ent{"a/b/up", "../../lib", os.ModeSymlink | 0o777},
	)
	dest := filepath.Join(t.TempDir(), "pkg")
	info, err := Extract(z, dest, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(z)
	want := Info{Sha256: base64.StdEncoding.EncodeToString(sum[:]), Size: int64(len(z)), Unzipped: int64(len("#!/bin/sh\n") + len("hello") + len("deep") + len("ELF"))}
	if info != want {
		t.Fatalf("info %+v, want %+v", info, want)
	}
	if got, err := Inspect(z, DefaultLimits()); err != nil || got != want {
		t.Fatalf("Inspect = %+v %v, want %+v", got, err, want)
	}

	for p, m := range map[string]fs.FileMode{
		".": 0o755, "bootstrap": 0o755, "lib": 0o755, "lib/data.txt": 0o644,
		"a": 0o755, "a/b": 0o755, "a/b/c": 0o755, "a/b/c/deep.txt": 0o644, "bin": 0o755, "bin/tool": 0o755,
	} {
		if got := perm(t, filepath.Join(dest, p)); got != m {
			t.Errorf("%s: mode %v, want %v", p, got, m)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dest, "bin/tool")); fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		t.Errorf("bin/tool keeps special bits: %v", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "link")); string(b) != "hello" {
		t.Errorf("symlink inside the package: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "a/b/up/data.txt")); string(b) != "hello" {
		t.Errorf("relative symlink up the tree: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "a/b/c/deep.txt")); string(b) != "deep" {
		t.Errorf("nested file: %q", b)
	}
	// Nothing but dest is left in the parent (no temporary directory).
	ents, _ := os.ReadDir(filepath.Dir(dest))
	if len(ents) != 1 {
		t.Errorf("parent holds %v", ents)
	}
}

func TestModesWithoutUnixInfo(t *testing.T) {
	z := mkrawzip(t,
		honest("win.txt", []byte("w"), 0x20, creatorFAT),               // FAT "archive" attribute only
		honest("win-exec", []byte("e"), 0o100755<<16|0x20, creatorFAT), // FAT creator, exec bits set anyway
		honest("noattrs", []byte("n"), 0, creatorUnix),                 // unix creator, no mode
		honest("dir/", nil, 0x10, creatorFAT),                          // FAT directory attribute
	)
	dest := filepath.Join(t.TempDir(), "pkg")
	if _, err := Extract(z, dest, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	for p, m := range map[string]fs.FileMode{"win.txt": 0o644, "win-exec": 0o755, "noattrs": 0o644, "dir": 0o755} {
		if got := perm(t, filepath.Join(dest, p)); got != m {
			t.Errorf("%s: mode %v, want %v", p, got, m)
		}
	}
	if fi, err := os.Stat(filepath.Join(dest, "dir")); err != nil || !fi.IsDir() {
		t.Errorf("dir/: %v %v", fi, err)
	}
}

func TestRootEntryAndDuplicateDirsAccepted(t *testing.T) {
	z := mkzip(t, ent{"./", "", os.ModeDir | 0o755}, ent{"d/", "", os.ModeDir | 0o755}, ent{"d/", "", os.ModeDir | 0o755}, ent{"./d/f", "x", 0o644}, ent{"d//g", "y", 0o644})
	dest := filepath.Join(t.TempDir(), "pkg")
	if _, err := Extract(z, dest, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d/f", "d/g"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Error(err)
		}
	}
}

func TestRejects(t *testing.T) {
	big := bytes.Repeat([]byte{0}, 4<<20)
	bomb := deflate(t, big)
	small := Limits{MaxZipped: 1 << 20, MaxUnzipped: 1 << 20, MaxFiles: 10}
	fifo := honest("pipe", nil, 0o010644<<16, creatorUnix)
	chr := honest("dev/null", nil, 0o020666<<16, creatorUnix)
	sock := honest("sock", nil, 0o140755<<16, creatorUnix)
	encrypted := honest("secret", []byte("x"), 0o100644<<16, creatorUnix)
	encrypted.hdr.Flags |= 1
	bzip2 := honest("b.bz2", []byte("x"), 0o100644<<16, creatorUnix)
	bzip2.hdr.Method = 12
	badCRC := honest("crc", []byte("hello"), 0o100644<<16, creatorUnix)
	badCRC.hdr.CRC32++
	overstated := honest("over", []byte("hello"), 0o100644<<16, creatorUnix)
	overstated.hdr.UncompressedSize64 = 6

	cases := []struct {
		name   string
		zip    []byte
		limits Limits
		reason string
		entry  string
		tooBig bool
	}{
		{"not a zip", []byte("hello, world"), Limits{}, ReasonNotZip, "", false},
		{"truncated zip", mkzip(t, ent{"a", "x", 0o644})[:30], Limits{}, ReasonNotZip, "", false},
		{"traversal", mkzip(t, ent{"../../etc/x", "x", 0o644}), Limits{}, ReasonTraversal, "../../etc/x", false},
		{"traversal after clean", mkzip(t, ent{"a/../../x", "x", 0o644}), Limits{}, ReasonTraversal, "a/../../x", false},
		{"dotdot dir", mkzip(t, ent{"../", "", os.ModeDir | 0o755}), Limits{}, ReasonTraversal, "../", false},
		{"absolute", mkzip(t, ent{"/abs", "x", 0o644}), Limits{}, ReasonAbsolute, "/abs", false},
		{"drive letter", mkzip(t, ent{"C:/Windows/x", "x", 0o644}), Limits{}, ReasonAbsolute, "C:/Windows/x", false},
		{"drive relative", mkzip(t, ent{"c:x", "x", 0o644}), Limits{}, ReasonAbsolute, "c:x", false},
		{"backslash traversal", mkzip(t, ent{`..\..\x`, "x", 0o644}), Limits{}, ReasonInvalidPath, `..\..\x`, false},
		{"backslash name", mkzip(t, ent{`lib\x.py`, "x", 0o644}), Limits{}, ReasonInvalidPath, `lib\x.py`, false},
		{"NUL", mkzip(t, ent{"a\x00b", "x", 0o644}), Limits{}, ReasonInvalidPath, "a\x00b", false},
		{"long component", mkzip(t, ent{strings.Repeat("n", 256), "x", 0o644}), Limits{}, ReasonInvalidPath, strings.Repeat("n", 256), false},
		{"symlink escapes", mkzip(t, ent{"l", "../../etc/passwd", os.ModeSymlink | 0o777}), Limits{}, ReasonSymlinkEscape, "l", false},
		{"symlink escapes from subdir", mkzip(t, ent{"a/b/l", "../../../x", os.ModeSymlink | 0o777}), Limits{}, ReasonSymlinkEscape, "a/b/l", false},
		{"symlink absolute", mkzip(t, ent{"l", "/etc/passwd", os.ModeSymlink | 0o777}), Limits{}, ReasonSymlinkEscape, "l", false},
		{"symlink to root parent", mkzip(t, ent{"l", "..", os.ModeSymlink | 0o777}), Limits{}, ReasonSymlinkEscape, "l", false},
		// Lexically "sub/up/.." is "sub", but sub/up is a link to the root,
		// so the kernel resolves it to the root's parent.
		{"symlink escapes through another symlink", mkzip(t,
			ent{"sub/up", "..", os.ModeSymlink | 0o777},
			ent{"esc", "sub/up/..", os.ModeSymlink | 0o777}), Limits{}, ReasonSymlinkEscape, "esc", false},
		{"symlink loop", mkzip(t, ent{"a", "b", os.ModeSymlink | 0o777}, ent{"b", "a", os.ModeSymlink | 0o777}), Limits{}, ReasonSymlinkLoop, "a", false},
		{"symlink backslash", mkzip(t, ent{"l", `..\..\x`, os.ModeSymlink | 0o777}), Limits{}, ReasonSymlinkEscape, "l", false},
		{"symlink empty", mkzip(t, ent{"l", "", os.ModeSymlink | 0o777}), Limits{}, ReasonInvalidPath, "l", false},
		{"write through symlink", mkzip(t, ent{"d", ".", os.ModeSymlink | 0o777}, ent{"d/x", "x", 0o644}), Limits{}, ReasonPathConflict, "d/x", false},
		{"write through symlink, link last", mkzip(t, ent{"d/x", "x", 0o644}, ent{"d", "/tmp", os.ModeSymlink | 0o777}), Limits{}, ReasonPathConflict, "d/x", false},
		{"entry below a file", mkzip(t, ent{"f", "x", 0o644}, ent{"f/x", "x", 0o644}), Limits{}, ReasonPathConflict, "f/x", false},
		{"duplicate file", mkzip(t, ent{"a", "1", 0o644}, ent{"a", "2", 0o644}), Limits{}, ReasonDuplicate, "a", false},
		{"file and dir", mkzip(t, ent{"a/", "", os.ModeDir | 0o755}, ent{"a", "2", 0o644}), Limits{}, ReasonDuplicate, "a", false},
		{"fifo", mkrawzip(t, fifo), Limits{}, ReasonUnsupportedType, "pipe", false},
		{"char device", mkrawzip(t, chr), Limits{}, ReasonUnsupportedType, "dev/null", false},
		{"socket", mkrawzip(t, sock), Limits{}, ReasonUnsupportedType, "sock", false},
		{"encrypted", mkrawzip(t, encrypted), Limits{}, ReasonEncrypted, "secret", false},
		{"bzip2", mkrawzip(t, bzip2), Limits{}, ReasonCompression, "b.bz2", false},
		{"bad crc", mkrawzip(t, badCRC), Limits{}, ReasonCorrupt, "crc", false},
		{"size overstated", mkrawzip(t, overstated), Limits{}, ReasonCorrupt, "over", false},
		{"too many files", mkzip(t, ent{"a", "", 0o644}, ent{"b", "", 0o644}, ent{"c", "", 0o644}), Limits{MaxFiles: 2}, ReasonTooManyFiles, "", true},
		{"zipped too large", mkzip(t, ent{"a", strings.Repeat("x", 100), 0o644}), Limits{MaxZipped: 50}, "zipped size exceeds 50 bytes", "", true},
		{"unzipped too large, honest", mkzip(t, ent{"a", strings.Repeat("x", 600), 0o644}, ent{"b", strings.Repeat("x", 600), 0o644}), Limits{MaxUnzipped: 1000}, "unzipped size exceeds 1000 bytes", "b", true},
		// A bomb whose headers claim 10 bytes for 4 MiB of zeros.
		{"deflate bomb with lying header", mkrawzip(t, rawEnt{hdr: zip.FileHeader{
			Name: "bomb", Method: zip.Deflate, CreatorVersion: creatorUnix<<8 | 20, ExternalAttrs: 0o100644 << 16,
			CRC32: crc32.ChecksumIEEE(big), CompressedSize64: uint64(len(bomb)), UncompressedSize64: 10,
		}, data: bomb}), small, "unzipped size exceeds 1048576 bytes", "bomb", true},
		{"stored bomb with lying header", mkrawzip(t, rawEnt{hdr: zip.FileHeader{
			Name: "bomb", Method: zip.Store, UncompressedSize64: 10, CompressedSize64: 2 << 20,
		}, data: big[:2<<20]}), Limits{MaxZipped: 4 << 20, MaxUnzipped: 1 << 20}, "unzipped size exceeds 1048576 bytes", "bomb", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%s: err = %v, want *Error", op, err)
				}
				if e.Reason != c.reason || e.Entry != c.entry {
					t.Errorf("%s: reason %q entry %q, want %q %q", op, e.Reason, e.Entry, c.reason, c.entry)
				}
				if e.Fix == "" || !strings.Contains(err.Error(), e.Fix) || !strings.Contains(err.Error(), c.reason) {
					t.Errorf("%s: message %q lacks reason or fix", op, err)
				}
				if c.entry != "" && !strings.Contains(err.Error(), strconv.Quote(c.entry)) {
					t.Errorf("%s: message %q does not name the entry", op, err)
				}
				if errors.Is(err, ErrTooLarge) != c.tooBig || errors.Is(err, ErrInvalid) == c.tooBig {
					t.Errorf("%s: class: ErrTooLarge=%v ErrInvalid=%v", op, errors.Is(err, ErrTooLarge), errors.Is(err, ErrInvalid))
				}
			}
			_, err := Inspect(c.zip, c.limits)
			check("Inspect", err)

			parent := t.TempDir()
			dest := filepath.Join(parent, "pkg")
			_, err = Extract(c.zip, dest, c.limits)
			check("Extract", err)
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("left behind after a rejected package: %v", ents)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Inspect(mkzip(t, ent{"../../etc/x", "x", 0o644}), Limits{})
	msg := err.Error()
	for _, want := range []string{"path traversal", `"../../etc/x"`, "zip -r"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestExtractDestExists(t *testing.T) {
	z := mkzip(t, ent{"a", "x", 0o644})
	dest := filepath.Join(t.TempDir(), "pkg")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(z, dest, Limits{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Errorf("existing dest modified: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dest)); len(ents) != 1 {
		t.Errorf("parent: %v", ents)
	}
}

func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Mkdir(a, 0o755)
	os.Mkdir(b, 0o755) // empty: plain rename(2) would replace it
	if err := renameNoReplace(a, b); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
}

func TestDefaultLimits(t *testing.T) {
	l := DefaultLimits()
	if l.MaxZipped != 52428800 || l.MaxUnzipped != 262144000 || l.MaxFiles != 20000 {
		t.Fatalf("%+v", l)
	}
	if (Limits{}).withDefaults() != l {
		t.Fatal("zero Limits do not take the defaults")
	}
	_, err := Inspect(mkzip(t, ent{"a", "x", 0o644}), Limits{MaxZipped: 10})
	if err == nil || !strings.Contains(err.Error(), "zipped size exceeds 10 bytes") {
		t.Fatalf("zipped limit: %v", err)
	}
}

// escapesFS resolves the symlink at rel (relative to root) on the real file
// system, the way the kernel does, and reports whether it leaves root.
func escapesFS(root, rel, target string) bool {
	var stack []string
	if d := path.Dir(rel); d != "." {
		stack = strings.Split(d, "/")
	}
	pending := strings.Split(target, "/")
	if strings.HasPrefix(target, "/") {
		return true
	}
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return true
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		p := filepath.Join(append([]string{root}, stack...)...)
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if hops++; hops > 40 {
			return false // ELOOP: resolves nowhere
		}
		t, err := os.Readlink(p)
		if err != nil {
			return true
		}
		if strings.HasPrefix(t, "/") {
			return true
		}
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(t, "/"), pending...)
	}
	return false
}

// checkConfined asserts the invariants of one Extract call: nothing but dest
// in parent, dest only on success, no symlink in dest resolving outside it,
// Inspect agreeing with Extract.
func checkConfined(t *testing.T, z []byte, l Limits) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "pkg")
	_, xerr := Extract(z, dest, l)
	_, ierr := Inspect(z, l)
	var xe, ie *Error
	if errors.As(xerr, &xe) != errors.As(ierr, &ie) || (xe != nil && ie != nil && xe.Reason != ie.Reason) {
		t.Fatalf("Extract and Inspect disagree: %v / %v", xerr, ierr)
	}
	ents, _ := os.ReadDir(parent)
	switch {
	case xerr != nil && len(ents) != 0:
		t.Fatalf("failed extraction (%v) left %v", xerr, ents)
	case xerr == nil && (len(ents) != 1 || ents[0].Name() != "pkg"):
		t.Fatalf("wrote outside dest: %v", ents)
	}
	if xerr != nil {
		return
	}
	err := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dest, p)
			if escapesFS(dest, filepath.ToSlash(rel), target) {
				t.Errorf("symlink %s -> %s escapes the package", rel, target)
			}
		}
		if d.Type()&^(fs.ModeDir|fs.ModeSymlink) != 0 {
			t.Errorf("special file %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var fuzzLimits = Limits{MaxZipped: 1 << 20, MaxUnzipped: 1 << 20, MaxFiles: 100}

func FuzzExtract(f *testing.F) {
	f.Add(mkzip(f, ent{"a/b", "x", 0o644}))
	f.Add(mkzip(f, ent{"../x", "x", 0o644}))
	f.Add(mkzip(f, ent{"l", "../x", os.ModeSymlink | 0o777}))
	f.Add(mkzip(f, ent{"sub/up", "..", os.ModeSymlink | 0o777}, ent{"esc", "sub/up/..", os.ModeSymlink | 0o777}))
	f.Add(mkzip(f, ent{"d", ".", os.ModeSymlink | 0o777}, ent{"d/x", "x", 0o644}))
	f.Add(mkzip(f, ent{"bootstrap", "#!/bin/sh", 0o755}, ent{"lib/", "", os.ModeDir | 0o755}, ent{"lib/l", "../bootstrap", os.ModeSymlink | 0o777}))
	f.Add(mkzip(f, ent{`..\x`, "x", 0o644}, ent{"/abs", "x", 0o644}))
	f.Fuzz(func(t *testing.T, z []byte) {
		checkConfined(t, z, fuzzLimits)
	})
}

// FuzzExtractEntries builds well-formed zips from fuzzed names and symlink
// targets, where the interesting path bugs live.
func FuzzExtractEntries(f *testing.F) {
	f.Add("a/l", "..", "b", "a/l/../x")
	f.Add("l", ".", "m", "l/../..")
	f.Add("x/y", "../../z", "x/", "")
	f.Add("d", "sub", "sub/", "d/f")
	f.Add("./a", "./b/../..", "b", "c")
	f.Fuzz(func(t *testing.T, link, target, name2, target2 string) {
		ents := []ent{{link, target, os.ModeSymlink | 0o777}}
		if target2 != "" {
			ents = append(ents, ent{name2, target2, os.ModeSymlink | 0o777})
		} else {
			ents = append(ents, ent{name2, "data", 0o644})
		}
		ents = append(ents, ent{"f", "x", 0o755})
		for i := range ents {
			if strings.HasSuffix(ents[i].name, "/") {
				ents[i].data = "" // the zip writer refuses data for a directory name
			}
		}
		checkConfined(t, mkzip(t, ents...), fuzzLimits)
	})
}
