package testkit

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RIEModule is the AWS Lambda Runtime Interface Emulator that .ci/run installs.
const RIEModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// RequireRIE returns the path of aws-lambda-rie, or skips the test where it
// cannot run (not Linux, or not installed; CI installs it).
func RequireRIE(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the Runtime Interface Emulator runs on Linux only")
	}
	rie, err := exec.LookPath("aws-lambda-rie")
	if err != nil {
		t.Skip("aws-lambda-rie not on PATH: go install " + RIEModule + " (CI does)")
	}
	return rie
}

// BuildBootstrap builds the Lambda function in the package directory pkg as
// `make lambda` does (static, stripped, trimmed paths, lambda.norpc), for
// Linux on this machine's architecture, and returns the binary's path.
func BuildBootstrap(t testing.TB, pkg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", "lambda.norpc", "-o", path, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	if fi, err := os.Stat(path); err == nil {
		t.Logf("bootstrap %s (linux/%s, stripped): %d bytes", pkg, runtime.GOARCH, fi.Size())
	}
	return path
}

// RIE is a Lambda function running under the Runtime Interface Emulator,
// reached over HTTP as Lambda's Invoke API.
type RIE struct {
	addr       string
	cmd        *exec.Cmd
	out        *Buffer
	outDone    chan struct{}
	initReport chan float64
}

var initReportRE = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// StartRIE runs bootstrap under the emulator rie with exactly the
// environment env (plus PATH), and returns once the emulator has started it.
// Cleanup ends both.
func StartRIE(t testing.TB, rie, bootstrap string, env []string) *RIE {
	t.Helper()
	r := &RIE{addr: FreeAddr(t), out: &Buffer{}, outDone: make(chan struct{}), initReport: make(chan float64, 1)}
	r.cmd = exec.Command(rie, "--runtime-interface-emulator-address", r.addr, "--runtime-api-address", FreeAddr(t), bootstrap)
	r.cmd.Dir = t.TempDir()
	r.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Its own process group, so that cleanup ends RIE and bootstrap both.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start aws-lambda-rie: %v", err)
	}
	t.Cleanup(r.Stop)

	// RIE logs "exec '<bootstrap>'" just before it listens; the runtime's
	// stdout (the function's log lines and RIE's REPORT lines) goes to its stdout.
	execLogged := make(chan struct{})
	go ScanLines(stderr, func(line string) {
		if strings.Contains(line, "exec '") {
			close(execLogged)
		}
		if m := initReportRE.FindStringSubmatch(line); m != nil {
			ms, _ := strconv.ParseFloat(m[1], 64)
			r.initReport <- ms
		}
	})
	go func() {
		_, _ = io.Copy(r.out, stdout)
		close(r.outDone)
	}()
	select {
	case <-execLogged:
	case <-time.After(30 * time.Second):
		t.Fatal("aws-lambda-rie did not start in 30s")
	}
	return r
}

// Invoke posts an event to the Invoke API and returns the function's
// response; an error response fails the test. RIE listens a moment after
// it logs its start: a refused connection is retried, for at most 5 s.
func (r *RIE) Invoke(t testing.TB, event string) []byte {
	t.Helper()
	url := "http://" + r.addr + "/2015-03-31/functions/function/invocations"
	client := &http.Client{Timeout: 90 * time.Second}
	giveUp := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.Post(url, "application/json", strings.NewReader(event))
		if errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(giveUp) {
			<-time.After(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("invoke: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"errorMessage"`) {
			t.Fatalf("invoke: %s: %s", resp.Status, body)
		}
		return body
	}
}

// InitDuration waits up to 10 s for RIE's INIT REPORT and returns its
// duration in milliseconds.
func (r *RIE) InitDuration() (float64, bool) {
	select {
	case ms := <-r.initReport:
		return ms, true
	case <-time.After(10 * time.Second):
		return 0, false
	}
}

// Stop ends the emulator and the function and waits for their output.
func (r *RIE) Stop() {
	if r.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.outDone
	_ = r.cmd.Wait()
}

// Output is what the function wrote so far (complete after Stop).
func (r *RIE) Output() string { return r.out.String() }

// ScanLines calls f with each line read from r, until r ends.
func ScanLines(r io.Reader, f func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f(sc.Text())
	}
}
