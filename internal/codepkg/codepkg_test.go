package codepkg

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type ent struct {
	name string
	data string
	mode os.FileMode
}

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
		w.Write([]byte(e.data))
	}
	zw.Close()
	return buf.Bytes()
}

func TestExtractKeepsModesAndTree(t *testing.T) {
	z := mkzip(t, ent{"bootstrap", "#!/bin/sh\n", 0o755}, ent{"lib/", "", os.ModeDir | 0o755}, ent{"lib/data.txt", "hello", 0o600}, ent{"link", "lib/data.txt", os.ModeSymlink | 0o777})
	dest := filepath.Join(t.TempDir(), "pkg")
	info, err := Extract(z, dest, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(z)) || info.Unzipped != int64(len("#!/bin/sh\n")+len("hello")) {
		t.Fatalf("info %+v", info)
	}
	fi, _ := os.Stat(filepath.Join(dest, "bootstrap"))
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("bootstrap mode %v", fi.Mode())
	}
	fi, _ = os.Stat(filepath.Join(dest, "lib/data.txt"))
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("data mode %v (must be readable by the sandbox uid)", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "link")); string(b) != "hello" {
		t.Fatalf("symlink inside the package: %q", b)
	}
}

func TestRejects(t *testing.T) {
	cases := map[string][]byte{
		"path traversal":          mkzip(t, ent{"../../etc/x", "x", 0o644}),
		"absolute path":           mkzip(t, ent{"/abs", "x", 0o644}),
		"backslash":               mkzip(t, ent{"..\\x", "x", 0o644}),
		"symlink escapes package": mkzip(t, ent{"l", "../../etc/passwd", os.ModeSymlink | 0o777}),
		"symlink absolute":        mkzip(t, ent{"l", "/etc/passwd", os.ModeSymlink | 0o777}),
		"not a zip":               []byte("hello"),
	}
	for name, z := range cases {
		t.Run(name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "pkg")
			_, err := Extract(z, dest, DefaultLimits())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %v", err)
			}
			if _, err := os.Stat(dest); err == nil {
				t.Fatal("dest exists after a rejected package")
			}
		})
	}
}

func TestWriteThroughSymlinkRejected(t *testing.T) {
	z := mkzip(t, ent{"d", ".", os.ModeSymlink | 0o777}, ent{"d/x", "x", 0o644})
	if _, err := Extract(z, filepath.Join(t.TempDir(), "pkg"), DefaultLimits()); err == nil {
		t.Fatal("write through a symlinked directory accepted")
	}
}

// A bomb whose headers understate the size is stopped by the bytes written.
func TestZipBombStoppedOnBytesWritten(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.CreateRaw(&zip.FileHeader{Name: "bomb", Method: zip.Store, UncompressedSize64: 10, CompressedSize64: 1 << 20, CRC32: 0})
	w.Write(bytes.Repeat([]byte{0}, 1<<20))
	zw.Close()
	l := Limits{MaxZipped: 50 << 20, MaxUnzipped: 1000, MaxFiles: 10}
	dest := filepath.Join(t.TempDir(), "pkg")
	if _, err := Extract(buf.Bytes(), dest, l); err == nil {
		t.Fatal("lying header accepted")
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("partial extraction left behind")
	}
	z := mkzip(t, ent{"big", strings.Repeat("a", 5000), 0o644})
	if _, err := Inspect(z, l); err == nil || !strings.Contains(err.Error(), "unzipped size exceeds 1000 bytes") {
		t.Fatalf("deflate bomb: %v", err)
	}
}

func TestLimits(t *testing.T) {
	z := mkzip(t, ent{"a", "x", 0o644}, ent{"b", "x", 0o644})
	if _, err := Inspect(z, Limits{MaxZipped: 10}); err == nil {
		t.Fatal("zipped limit not enforced")
	}
	if _, err := Inspect(z, Limits{MaxFiles: 1}); err == nil || !strings.Contains(err.Error(), "too many files") {
		t.Fatalf("file count: %v", err)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(mkzip(f, ent{"a/b", "x", 0o644}))
	f.Add(mkzip(f, ent{"../x", "x", 0o644}))
	f.Add(mkzip(f, ent{"l", "../x", os.ModeSymlink | 0o777}))
	f.Fuzz(func(t *testing.T, z []byte) {
		root := t.TempDir()
		dest := filepath.Join(root, "pkg")
		Extract(z, dest, Limits{MaxZipped: 1 << 20, MaxUnzipped: 1 << 20, MaxFiles: 100})
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.Name() != "pkg" {
				t.Fatalf("wrote outside dest: %s", e.Name())
			}
		}
	})
}
