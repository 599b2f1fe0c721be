package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/snippets"
	"github.com/keyrot/keyrot/internal/testkit"
)

// TestREADME runs the README's runnable blocks in order, as a reader in a
// shell would, so the README cannot drift from what keyrot does: its
// install line builds keyrot from the tree into a directory first on PATH,
// keyrot dev runs in the background as in a first terminal, and the blocks
// after it use the config and environment it wrote. HOME is a scratch
// directory, the AWS and KEYROT variables of the test's own environment are
// dropped, and the README's ports (4566, 4567, 8000, 8001) become free ones.
func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keyrot and runs the README's commands (about 15 s)")
	}
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := snippets.Parse(doc)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	r := newReadmeRun(t)
	var ran, written, skipped int
	for _, b := range blocks {
		switch {
		case !b.Marked:
			continue
		case !b.Run:
			skipped++
			t.Logf("README.md:%d: not runnable: %s", b.Line, b.Reason)
		case b.File != "":
			written++
			r.writeFile(t, b)
		default:
			ran++
			t.Run(fmt.Sprintf("README.md:%d", b.Line), func(t *testing.T) { r.run(t, b) })
		}
	}
	t.Logf("%d blocks run, %d files written, %d not runnable", ran, written, skipped)
}

// readmeRun is the reader's machine: a scratch home and work directory,
// keyrot installed into bin, and the environment every block starts from.
type readmeRun struct {
	root, work, home, bin, awsShim string
	env                            []string
	ports                          map[string]string // the README's port -> a free one
	have                           map[string]bool   // outside tools on PATH
	atEnd                          func(func())      // the whole test's Cleanup
}

func newReadmeRun(t *testing.T) *readmeRun {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	r := &readmeRun{root: root, work: filepath.Join(ws, "work"), home: filepath.Join(ws, "home"), bin: filepath.Join(ws, "bin"),
		awsShim: filepath.Join(ws, "aws-endpoint"), ports: map[string]string{}, have: map[string]bool{}, atEnd: t.Cleanup}
	for _, d := range []string{r.work, r.home, r.bin, r.awsShim} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"4566", "4567", "8000", "8001"} {
		_, r.ports[p], _ = net.SplitHostPort(testkit.FreeAddr(t))
	}
	// The reader's curl shows an error's body; the test's fails on it.
	if err := os.WriteFile(filepath.Join(r.home, ".curlrc"), []byte("fail\nsilent\nshow-error\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"aws", "curl"} {
		path, err := exec.LookPath(tool)
		r.have[tool] = err == nil
		if tool == "aws" && err == nil {
			shim := "#!/bin/sh\nexec " + path + " --endpoint-url \"$AWS_ENDPOINT_URL\" \"$@\"\n"
			if err := os.WriteFile(filepath.Join(r.awsShim, "aws"), []byte(shim), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The Go settings that live under the real HOME stay where they are,
	// so the install line reuses the build cache (in CI, go vet has
	// compiled every package it needs).
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV").Output()
	if err != nil {
		t.Fatal(err)
	}
	goEnv := strings.Fields(string(out))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "KEYROT_"), strings.HasPrefix(k, "XDG_"),
			k == "API_KEY", k == "LOG_LEVEL", k == "HOME", k == "PATH", k == "GOBIN":
			continue
		}
		r.env = append(r.env, kv)
	}
	r.env = append(r.env, "HOME="+r.home, "GOBIN="+r.bin,
		"GOCACHE="+goEnv[0], "GOMODCACHE="+goEnv[1], "GOPATH="+goEnv[2], "GOENV="+goEnv[3],
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=",
		"KEYROT_SANDBOX_LISTEN=127.0.0.1:"+r.ports["4566"], "KEYROT_API_LISTEN=127.0.0.1:"+r.ports["8000"])
	return r
}

var readmeAddr = regexp.MustCompile(`\b(127\.0\.0\.1|localhost):(4566|4567|8000|8001)\b`)

// text is the block as the test runs it: the README's ports made free ones.
func (r *readmeRun) text(b snippets.Snippet) string {
	return readmeAddr.ReplaceAllStringFunc(b.Text, func(addr string) string {
		host, port, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(host, r.ports[port])
	})
}

func (r *readmeRun) writeFile(t *testing.T, b snippets.Snippet) {
	t.Helper()
	path := b.File
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		path = filepath.Join(r.home, rest)
	} else if !filepath.IsAbs(path) {
		path = filepath.Join(r.work, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(r.text(b)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// run runs one block with bash in its own process group: to the end for a
// plain block, until its output matches for a background one (which runs
// on until the test ends).
func (r *readmeRun) run(t *testing.T, b snippets.Snippet) {
	text := r.text(b)
	for tool, have := range r.have {
		if !have && regexp.MustCompile(`(?m)(^|[|;&(]\s*|\$\(\s*)`+tool+`\s`).MatchString(text) {
			t.Skipf("%s is not installed (.ci/run installs it)", tool)
		}
	}
	script := "set -euo pipefail\n"
	for _, src := range b.Sourcing {
		script += ". " + src + "\n"
	}
	script += text
	path := r.bin + string(os.PathListSeparator) + os.Getenv("PATH")
	if b.AWSEndpoint {
		path = r.awsShim + string(os.PathListSeparator) + path
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = r.work
	if b.Clone {
		cmd.Dir = r.root
	}
	cmd.Env = append(append([]string{}, r.env...), "PATH="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { // Wait returns once every process holding the output has ended
		waitErr = cmd.Wait()
		close(done)
	}()
	kill := func(sig syscall.Signal) { _ = syscall.Kill(-cmd.Process.Pid, sig) }
	stop := func() {
		kill(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			kill(syscall.SIGKILL)
			<-done
		}
	}

	timeout := 60 * time.Second
	if b.Clone {
		timeout = 5 * time.Minute // the install line compiles what the build cache lacks
	}
	if b.Until != nil {
		ctx, cancel := context.WithTimeoutCause(context.Background(), timeout, fmt.Errorf("not ready within %s", timeout))
		defer cancel()
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, err := out.WaitFor(ctx, b.Until); err != nil {
			stop()
			t.Fatalf("README.md:%d in the background:\n%s\n%v (exit: %v)", b.Line, script, err, waitErr)
		}
		r.atEnd(stop) // runs on while the later blocks run
		return
	}
	select {
	case <-done:
		kill(syscall.SIGKILL) // whatever the block left running
		if waitErr != nil {
			t.Fatalf("README.md:%d:\n%s\nfailed: %v\n%s", b.Line, script, waitErr, out)
		}
	case <-time.After(timeout):
		stop()
		t.Fatalf("README.md:%d did not finish within %s:\n%s\n%s", b.Line, timeout, script, out)
	}
}
