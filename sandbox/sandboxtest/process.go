package sandboxtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/sandbox"
)

// childEnv marks a test binary that StartProcess started to serve a sandbox.
const childEnv = "KEYROT_SANDBOXTEST_CHILD"

// ServeIfChild serves a sandbox, when this test binary is a child that
// StartProcess started: on a free loopback port whose URL it prints, until
// its stdin closes (the parent ended), then it exits. Otherwise it returns
// at once. Call it first in TestMain.
func ServeIfChild() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	sb, err := sandbox.New(sandbox.Options{Seed: 1})
	if err == nil {
		err = sb.Start(context.Background(), "127.0.0.1:0")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandboxtest: child sandbox:", err)
		os.Exit(1)
	}
	fmt.Println(sb.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// StartProcess runs a sandbox (admin credentials test/test, wall clock) in
// a child process, this test binary again (its TestMain calls
// ServeIfChild), and returns its URL and pid; the child ends at cleanup.
// For benchmarks that measure this process's memory without the sandbox's.
func StartProcess(t testing.TB) (url string, pid int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("sandboxtest: %v", err)
	}
	cmd := exec.Command(self, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("sandboxtest: %v", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("sandboxtest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("sandboxtest: start the sandbox's process: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("sandboxtest: read the sandbox's URL: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid
}
