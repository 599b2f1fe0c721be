package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keyrot/keyrot/internal/atomicfile"
)

func TestWriteReplacesWholeAndPrivately(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	for _, body := range []string{"first", "second, longer"} {
		if err := atomicfile.Write(dir, "f.json", []byte(body)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "f.json"))
		if err != nil || string(got) != body {
			t.Fatalf("read %q, %v; want %q", got, err, body)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "f.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, %v; want 0700", di.Mode().Perm(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d files, want 1: no temporary file left", len(entries))
	}
	if err := atomicfile.Write(filepath.Join(dir, "f.json", "sub"), "g", nil); err == nil {
		t.Fatal("wrote under a file")
	}
}
