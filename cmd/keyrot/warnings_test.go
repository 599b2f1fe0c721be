package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyrot/keyrot/mock"
)

// TestWarningNotResentAfterRestart: each `keyrot rotate` is a new process
// (as each Lambda environment is), emailing through the sandbox's SES. A
// standing warning (a key keyrot did not create, under unmanaged_keys:
// report) is emailed once; the next processes within notify.quiet_period
// do not email it again, because the record on the user's secret says it
// went out; the first process after the quiet period does.
func TestWarningNotResentAfterRestart(t *testing.T) {
	tm := newTestMain(t)
	clock := mock.NewClock(time.Now().UTC().Truncate(time.Second))
	clock.SetAutoAdvance(true) // a retry's wait costs nothing
	tm.clock = clock
	tm.createUser("ci-bot")
	cfg := tm.writeConfig(`
users: {names: [ci-bot]}
rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d, unmanaged_keys: report}
notify: {via: ses, sender: keyrot@example.com, admin: security@example.com, send_rate: 100, quiet_period: 1h}
log: {format: json}
`)
	ctx := context.Background()
	rotate := func() {
		t.Helper()
		if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
			t.Fatalf("rotate: exit %d: %s", code, tm.stderr)
		}
	}
	warnings := func() int {
		n := 0
		for _, m := range tm.sb.Outbox() {
			if strings.Contains(m.Subject, "WARNING") {
				n++
			}
		}
		return n
	}
	rotate() // keyrot's key is current
	if _, err := awsiam.NewFromConfig(tm.aws).CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatal(err)
	}
	rotate()
	if got := warnings(); got != 1 {
		t.Fatalf("warnings emailed after the key appeared: %d, want 1", got)
	}
	for range 3 {
		clock.Advance(15 * time.Minute)
		rotate()
	}
	if got := warnings(); got != 1 {
		t.Fatalf("warnings emailed after 3 restarts within the quiet period: %d, want still 1", got)
	}
	clock.Advance(15 * time.Minute) // an hour since it was sent
	rotate()
	if got := warnings(); got != 2 {
		t.Fatalf("warnings emailed after the quiet period: %d, want 2", got)
	}
}
