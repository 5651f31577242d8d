package layers

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if len(content) > 2 && content[:2] == "->" {
			if err := os.Symlink(content[2:], p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMergeOrder(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	write(t, a, map[string]string{
		"python/shared.py": "A", "python/only_a.py": "a", "override.txt": "from a",
		"bin/tool": "a-tool", "conflict/x": "dir in a", "lnk": "->python",
	})
	write(t, b, map[string]string{
		"python/shared.py": "B", "override.txt": "from b", "conflict": "file in b",
		"lnk/inside": "b makes lnk a dir",
	})
	dest := filepath.Join(base, "merged")
	if err := Merge([]string{a, b}, dest); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"python/shared.py": "B", "python/only_a.py": "a", "override.txt": "from b",
		"bin/tool": "a-tool", "conflict": "file in b", "lnk/inside": "b makes lnk a dir",
	}
	for name, content := range want {
		got, err := os.ReadFile(filepath.Join(dest, name))
		if err != nil || string(got) != content {
			t.Errorf("%s = %q, %v; want %q", name, got, err, content)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dest, "lnk")); err != nil || !fi.IsDir() {
		t.Errorf("lnk should have become a real directory: %v %v", fi, err)
	}
	// The symlink of a did not let b write into a's python directory.
	if _, err := os.Stat(filepath.Join(a, "python", "inside")); err == nil {
		t.Errorf("merge wrote through a symlink into a source")
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o755 {
		t.Errorf("merged dir mode %v", fi.Mode())
	}
	// Idempotent: a second build of the same tree is a no-op.
	if err := Merge([]string{b, a}, dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "override.txt")); string(got) != "from b" {
		t.Errorf("existing merged tree was rebuilt: %q", got)
	}
	left, _ := filepath.Glob(filepath.Join(base, "merged.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func TestMergedName(t *testing.T) {
	if MergedName([]string{"a", "b"}) == MergedName([]string{"b", "a"}) {
		t.Fatal("order must change the merged name")
	}
}
