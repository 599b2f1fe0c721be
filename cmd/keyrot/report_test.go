package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot/fleet"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/mock"
)

const reportConfig = `
users: {names: [ci-bot, legacy], exempt_tag: "keyrot:exempt=true"}
rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}
notify: {via: log}
api: {listen: "127.0.0.1:0"}
log: {format: json}
`

// TestReport runs `keyrot report` against the sandbox: in policy it exits
// 0; a hundred days later (a driven clock) every key is too old, and it
// exits 1 for CI, naming the keys.
func TestReport(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	ctx := context.Background()
	iamc := awsiam.NewFromConfig(tm.aws)
	if _, err := iamc.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("legacy"),
		Tags: []iamtypes.Tag{{Key: aws.String("keyrot:exempt"), Value: aws.String("true")}}}); err != nil {
		t.Fatal(err)
	}
	legacyKey, err := iamc.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String("legacy")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tm.writeConfig(reportConfig)
	if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
		t.Fatalf("rotate: %d %s", code, tm.stderr)
	}

	tm.stdout.Reset()
	if code := tm.run(ctx, "report", "--config", cfg); code != exitOK {
		t.Fatalf("report in policy: exit %d\n%s%s", code, tm.stdout, tm.stderr)
	}
	if out := tm.stdout.String(); !strings.Contains(out, "2 users (1 exempt): 2 in policy, 0 out of policy") || !strings.Contains(out, "exempt: tagged keyrot:exempt=true") {
		t.Errorf("report table:\n%s", out)
	}

	tm.clock = mock.NewClock(time.Now().Add(100 * 24 * time.Hour))
	tm.stdout.Reset()
	tm.stderr.Reset()
	if code := tm.run(ctx, "report", "--config", cfg, "-o", "json"); code != exitFailed {
		t.Fatalf("report out of policy: exit %d, want %d\n%s%s", code, exitFailed, tm.stdout, tm.stderr)
	}
	var rep fleet.Report
	if err := json.Unmarshal([]byte(tm.stdout.String()), &rep); err != nil {
		t.Fatalf("report json: %v\n%s", err, tm.stdout)
	}
	if rep.Summary.OutOfPolicy != 2 || rep.Summary.KeysTooOld != 2 {
		t.Errorf("summary = %+v, want both users' keys too old", rep.Summary)
	}
	if stderr := tm.stderr.String(); !strings.Contains(stderr, "0 in policy, 2 out of policy") || !strings.Contains(stderr, "keyrot report: 2 of 2 users out of policy") {
		t.Errorf("stderr:\n%s", stderr)
	}
	for _, format := range []string{"csv", "markdown", "table"} {
		tm.stdout.Reset()
		if code := tm.run(ctx, "report", "--config", cfg, "-o", format, "--max-age", "365d", "--max-unused", "365d"); code != exitOK {
			t.Errorf("report -o %s with a 365-day policy: exit %d\n%s", format, code, tm.stderr)
		}
		if !strings.Contains(tm.stdout.String(), "legacy") {
			t.Errorf("report -o %s lacks the exempt user:\n%s", format, tm.stdout)
		}
	}
	for _, args := range [][]string{{"-o", "yaml"}, {"--max-age", "0s"}, {"--max-unused", "soon"}} {
		if code := tm.run(ctx, append([]string{"report", "--config", cfg}, args...)...); code != exitUsage {
			t.Errorf("report %v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if out := tm.stdout.String() + tm.stderr.String(); strings.Contains(out, aws.ToString(legacyKey.AccessKey.SecretAccessKey)) {
		t.Error("a secret access key reached the report")
	}
}

// TestUIOnTheAPI: the daemon and `keyrot serve` both serve /ui beside the
// API, behind the API keys.
func TestUIOnTheAPI(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	ctx := context.Background()
	cfg := tm.writeConfig(reportConfig)
	key, _, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("API_KEY", key)
	for _, command := range []string{"run", "serve"} {
		t.Run(command, func(t *testing.T) {
			sctx, cancel := context.WithCancel(ctx)
			ready := make(chan map[string]string, 1)
			done := make(chan int, 1)
			go func() {
				m := &Main{Stdout: tm.stdout, Stderr: tm.stderr, LookupEnv: os.LookupEnv, Open: openFile, Ready: func(a map[string]string) { ready <- a }}
				done <- m.Run(sctx, []string{command, "--config", cfg})
			}()
			var api string
			select {
			case a := <-ready:
				api = a["api"]
			case code := <-done:
				t.Fatalf("%s exited %d: %s", command, code, tm.stderr)
			}
			defer func() {
				cancel()
				if code := <-done; code != exitOK {
					t.Errorf("%s exit %d", command, code)
				}
			}()
			get := func(path, key string) (int, string) {
				req, _ := http.NewRequest(http.MethodGet, api+path, nil)
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := get("/ui", key); code != http.StatusOK || !strings.Contains(body, `data-user="ci-bot"`) || !strings.Contains(body, `data-user="legacy"`) {
				t.Errorf("GET /ui: %d\n%s", code, body)
			}
			if code, _ := get("/ui/users/ci-bot", key); code != http.StatusOK {
				t.Errorf("GET /ui/users/ci-bot: %d", code)
			}
			if code, _ := get("/ui", ""); code != http.StatusUnauthorized {
				t.Errorf("GET /ui without a key: %d, want 401", code)
			}
		})
	}
}
