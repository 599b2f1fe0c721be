package iam_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	"golang.org/x/time/rate"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/iam"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

func setup(t *testing.T, opts sandbox.Options) (*iam.KeyManager, *iam.Verifier, *awsiam.Client, aws.Config) {
	t.Helper()
	sb := sandboxtest.Start(t, opts)
	cfg := sandboxtest.Config(t, sb)
	client := awsiam.NewFromConfig(cfg)
	return iam.New(client, nil), iam.NewVerifier(cfg), client, cfg
}

func TestKeyLifecycleAndErrors(t *testing.T) {
	ctx := context.Background()
	km, v, client, _ := setup(t, sandbox.Options{})
	if _, err := km.GetUser(ctx, "nobody"); !errors.Is(err, keyrot.ErrUserNotFound) {
		t.Fatalf("GetUser(nobody) = %v, want ErrUserNotFound", err)
	}
	if _, err := km.ListAccessKeys(ctx, "nobody"); !errors.Is(err, keyrot.ErrUserNotFound) {
		t.Fatalf("ListAccessKeys(nobody) = %v", err)
	}
	if _, err := client.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatal(err)
	}
	a, err := km.CreateAccessKey(ctx, "ci-bot")
	if err != nil || !strings.HasPrefix(a.AccessKeyID, "AKIA") || len(a.SecretAccessKey) != 40 {
		t.Fatalf("CreateAccessKey = %v, %v", a, err)
	}
	if err := v.VerifyKey(ctx, a); err != nil {
		t.Fatalf("VerifyKey(new key) = %v", err)
	}
	b, _ := km.CreateAccessKey(ctx, "ci-bot")
	if _, err := km.CreateAccessKey(ctx, "ci-bot"); !errors.Is(err, keyrot.ErrKeyLimit) {
		t.Fatalf("third key: %v, want ErrKeyLimit", err)
	}
	keys, err := km.ListAccessKeys(ctx, "ci-bot")
	if err != nil || len(keys) != 2 || keys[0].ID != a.AccessKeyID {
		t.Fatalf("ListAccessKeys = %v, %v", keys, err)
	}
	if err := km.SetKeyStatus(ctx, "ci-bot", a.AccessKeyID, keyrot.KeyInactive); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyKey(ctx, a); !errors.Is(err, keyrot.ErrKeyRejected) {
		t.Fatalf("VerifyKey(inactive) = %v, want ErrKeyRejected", err)
	}
	wrong := b
	wrong.SecretAccessKey = strings.Repeat("x", 40)
	if err := v.VerifyKey(ctx, wrong); !errors.Is(err, keyrot.ErrKeyRejected) || strings.Contains(err.Error(), wrong.SecretAccessKey) {
		t.Fatalf("VerifyKey(wrong secret) = %v", err)
	}
	if err := km.DeleteAccessKey(ctx, "ci-bot", a.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	if err := km.DeleteAccessKey(ctx, "ci-bot", a.AccessKeyID); !errors.Is(err, keyrot.ErrKeyNotFound) {
		t.Fatalf("delete twice = %v, want ErrKeyNotFound", err)
	}
	if last, err := km.KeyLastUsed(ctx, b.AccessKeyID); err != nil || !last.IsZero() {
		t.Fatalf("KeyLastUsed(unused) = %v, %v", last, err)
	}
	if err := v.VerifyKey(ctx, b); err != nil {
		t.Fatal(err)
	}
	if last, err := km.KeyLastUsed(ctx, b.AccessKeyID); err != nil || last.IsZero() {
		t.Fatalf("KeyLastUsed(used) = %v, %v", last, err)
	}
	other := b
	other.UserName = "someone-else"
	if err := v.VerifyKey(ctx, other); !errors.Is(err, keyrot.ErrKeyRejected) {
		t.Fatalf("VerifyKey(key of another user) = %v", err)
	}
}

func TestListingsPaginate(t *testing.T) {
	ctx := context.Background()
	km, _, client, _ := setup(t, sandbox.Options{})
	if _, err := client.CreateGroup(ctx, &awsiam.CreateGroupInput{GroupName: aws.String("exempt")}); err != nil {
		t.Fatal(err)
	}
	for i := range 205 {
		name := fmt.Sprintf("user-%03d", i)
		path := "/"
		if i%2 == 0 {
			path = "/ci/"
		}
		if _, err := client.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String(name), Path: aws.String(path)}); err != nil {
			t.Fatal(err)
		}
		if i < 120 {
			if _, err := client.AddUserToGroup(ctx, &awsiam.AddUserToGroupInput{GroupName: aws.String("exempt"), UserName: aws.String(name)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, err := km.ListUsers(ctx, "")
	if err != nil || len(all) != 205 {
		t.Fatalf("ListUsers = %d, %v", len(all), err)
	}
	ci, err := km.ListUsers(ctx, "/ci/")
	if err != nil || len(ci) != 103 {
		t.Fatalf("ListUsers(/ci/) = %d, %v", len(ci), err)
	}
	members, err := km.GroupMembers(ctx, "exempt")
	if err != nil || len(members) != 120 {
		t.Fatalf("GroupMembers = %d, %v", len(members), err)
	}
	if _, err := km.GroupMembers(ctx, "absent"); err == nil {
		t.Fatal("GroupMembers(absent) succeeded")
	}
}

func TestRateLimiterIsShared(t *testing.T) {
	ctx := context.Background()
	sb := sandboxtest.Start(t, sandbox.Options{})
	client := awsiam.NewFromConfig(sandboxtest.Config(t, sb))
	limiter := rate.NewLimiter(rate.Limit(1), 1)
	km := iam.New(client, limiter)
	if _, err := client.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatal(err)
	}
	if _, err := km.GetUser(ctx, "ci-bot"); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty now: a call with a short deadline cannot get a token.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := km.ListAccessKeys(short, "ci-bot"); err == nil || !strings.Contains(err.Error(), "rate limiter") {
		t.Fatalf("ListAccessKeys with an empty bucket = %v, want a rate limiter error", err)
	}
}
