package testkit

import (
	"os"
	"path/filepath"
	"testing"
)

// Golden compares got with the file testdata/name, or writes it there when
// update is set (a package's -update flag). fix is the command that
// accepts a change, for the failure message.
func Golden(t testing.TB, name, got string, update bool, fix string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run %s)", err, fix)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (%s to accept):\n--- got ---\n%s", path, fix, got)
	}
}
