package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/testkit"
)

// TestVersionCommand runs `keyrot version` in process: the test binary has
// no linked version, so it reports the module's (or devel), and the Go
// toolchain that built it.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errOut := &testkit.Buffer{}, &testkit.Buffer{}
		m := &Main{Stdout: out, Stderr: errOut, LookupEnv: func(string) (string, bool) { return "", false }}
		if code := m.Run(context.Background(), args); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "keyrot ") || len(lines[0]) <= len("keyrot ") {
			t.Fatalf("%v printed %q, want three lines starting with the version", args, out)
		}
		if want := "go:     " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH; lines[2] != want {
			t.Errorf("%v: go line %q, want %q", args, lines[2], want)
		}
		if !strings.HasPrefix(lines[1], "commit: ") {
			t.Errorf("%v: commit line %q", args, lines[1])
		}
	}

	m := &Main{Stdout: &testkit.Buffer{}, Stderr: &testkit.Buffer{}}
	if code := m.Run(context.Background(), []string{"version", "extra"}); code != exitUsage {
		t.Errorf("version extra: exit %d, want %d", code, exitUsage)
	}
	help := &testkit.Buffer{}
	m = &Main{Stdout: help, Stderr: help}
	if m.Run(context.Background(), []string{"help"}); !strings.Contains(help.String(), "\n  version ") {
		t.Errorf("help does not list the version command:\n%s", help)
	}
}

// TestVersionLinkedByRelease builds keyrot as `make release` does (the
// version and commit set with -ldflags -X, -trimpath, no build id) and runs
// `keyrot version`: the linked version and commit are printed, and the
// binary holds no path of the machine that built it.
func TestVersionLinkedByRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "keyrot")
	const commit = "0123456789abcdef0123456789abcdef01234567"
	// -buildvcs=false: the linked commit, not the checkout's, names the build.
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags",
		"-s -w -buildid= -X github.com/keyrot/keyrot/internal/buildinfo.version=v9.8.7-test -X github.com/keyrot/keyrot/internal/buildinfo.commit="+commit, "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("keyrot version: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	if got, want := lines[0], "keyrot v9.8.7-test"; got != want {
		t.Errorf("first line %q, want %q", got, want)
	}
	if got, want := lines[1], "commit: "+commit; got != want {
		t.Errorf("second line %q, want %q", got, want)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(wd)) // the module's directory on this machine
	goenv, err := exec.Command("go", "env", "GOMODCACHE", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range append(strings.Fields(string(goenv)), root) {
		if path != "" && bytes.Contains(data, []byte(path+"/")) {
			t.Errorf("the binary holds the build path %s", path)
		}
	}
}
