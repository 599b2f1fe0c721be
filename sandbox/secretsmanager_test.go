package sandbox_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

var smT0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// smEnv is a sandbox on a driven clock with a Secrets Manager client.
type smEnv struct {
	srv   *sandbox.Server
	clock *sandboxtest.Clock
	sm    *secretsmanager.Client
	cfg   aws.Config
}

func newSMEnv(t testing.TB) *smEnv {
	t.Helper()
	clock := sandboxtest.NewClock(smT0)
	srv := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 1})
	cfg := sandboxtest.Config(t, srv)
	return &smEnv{srv: srv, clock: clock, sm: secretsmanager.NewFromConfig(cfg), cfg: cfg}
}

// token returns a valid ClientRequestToken (32–64 chars) derived from s.
func smToken(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:36]
}

// wantCode fails the test unless err is an AWS API error with the given code.
func smWantCode(t testing.TB, err error, code string) smithy.APIError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("got %v (%T), want API error %s", err, err, code)
	}
	if got := apiErr.ErrorCode(); got != code {
		t.Fatalf("got error code %s (%v), want %s", got, err, code)
	}
	return apiErr
}

func smMust(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (e *smEnv) create(t testing.TB, name, value string) *secretsmanager.CreateSecretOutput {
	t.Helper()
	out, err := e.sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name: aws.String(name), SecretString: aws.String(value),
	})
	smMust(t, err, "create secret "+name)
	return out
}

func (e *smEnv) put(t testing.TB, id, value string, stages ...string) *secretsmanager.PutSecretValueOutput {
	t.Helper()
	out, err := e.sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(id), SecretString: aws.String(value), VersionStages: stages,
	})
	smMust(t, err, "put secret value "+id)
	return out
}

func (e *smEnv) versions(t testing.TB, id string, deprecated bool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	p := secretsmanager.NewListSecretVersionIdsPaginator(e.sm, &secretsmanager.ListSecretVersionIdsInput{
		SecretId: aws.String(id), IncludeDeprecated: aws.Bool(deprecated), MaxResults: aws.Int32(40),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		smMust(t, err, "list secret version ids")
		for _, v := range page.Versions {
			out[*v.VersionId] = v.VersionStages
		}
	}
	return out
}

func TestSecretsManagerCreateDescribeGet(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	tok := smToken("create")
	created, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:               aws.String("iam-key-rotation/alice"),
		ClientRequestToken: aws.String(tok),
		Description:        aws.String("alice's key"),
		KmsKeyId:           aws.String("alias/keyrot"),
		SecretString:       aws.String(`{"AccessKeyId":"AKIA1"}`),
		Tags:               []smtypes.Tag{{Key: aws.String("managed-by"), Value: aws.String("keyrot")}},
	})
	smMust(t, err, "create")
	if got, want := aws.ToString(created.VersionId), tok; got != want {
		t.Errorf("VersionId = %q, want the token %q", got, want)
	}
	arnRE := regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:123456789012:secret:iam-key-rotation/alice-[A-Za-z0-9]{6}$`)
	if !arnRE.MatchString(aws.ToString(created.ARN)) {
		t.Errorf("ARN = %q, want it to match %s", aws.ToString(created.ARN), arnRE)
	}

	t.Run("describe", func(t *testing.T) {
		d, err := e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: created.ARN})
		smMust(t, err, "describe")
		if got, want := aws.ToString(d.Name), "iam-key-rotation/alice"; got != want {
			t.Errorf("Name = %q, want %q", got, want)
		}
		if got, want := aws.ToString(d.Description), "alice's key"; got != want {
			t.Errorf("Description = %q, want %q", got, want)
		}
		if got, want := aws.ToString(d.KmsKeyId), "alias/keyrot"; got != want {
			t.Errorf("KmsKeyId = %q, want %q", got, want)
		}
		if len(d.Tags) != 1 || aws.ToString(d.Tags[0].Key) != "managed-by" {
			t.Errorf("Tags = %+v", d.Tags)
		}
		if got := d.VersionIdsToStages[tok]; len(got) != 1 || got[0] != "AWSCURRENT" {
			t.Errorf("VersionIdsToStages = %v", d.VersionIdsToStages)
		}
		if d.CreatedDate == nil || !d.CreatedDate.Equal(smT0) {
			t.Errorf("CreatedDate = %v, want %v", d.CreatedDate, smT0)
		}
		if d.LastChangedDate == nil || d.DeletedDate != nil {
			t.Errorf("LastChangedDate = %v, DeletedDate = %v", d.LastChangedDate, d.DeletedDate)
		}
	})

	t.Run("get by name, ARN and partial ARN", func(t *testing.T) {
		partial := strings.TrimSuffix(aws.ToString(created.ARN), aws.ToString(created.ARN)[len(*created.ARN)-7:])
		for _, id := range []string{"iam-key-rotation/alice", aws.ToString(created.ARN), partial} {
			v, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
			smMust(t, err, "get "+id)
			if got, want := aws.ToString(v.SecretString), `{"AccessKeyId":"AKIA1"}`; got != want {
				t.Errorf("get %s: SecretString = %q, want %q", id, got, want)
			}
			if len(v.VersionStages) != 1 || v.VersionStages[0] != "AWSCURRENT" || aws.ToString(v.VersionId) != tok {
				t.Errorf("get %s: VersionId %s, stages %v", id, aws.ToString(v.VersionId), v.VersionStages)
			}
			if v.CreatedDate == nil || !v.CreatedDate.Equal(smT0) {
				t.Errorf("get %s: CreatedDate = %v", id, v.CreatedDate)
			}
		}
		d, err := e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("iam-key-rotation/alice")})
		smMust(t, err, "describe")
		if want := smT0.Truncate(24 * time.Hour); d.LastAccessedDate == nil || !d.LastAccessedDate.Equal(want) {
			t.Errorf("LastAccessedDate = %v, want %v", d.LastAccessedDate, want)
		}
	})

	t.Run("create retried with the same token succeeds", func(t *testing.T) {
		again, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
			Name: aws.String("iam-key-rotation/alice"), ClientRequestToken: aws.String(tok),
			SecretString: aws.String(`{"AccessKeyId":"AKIA1"}`),
		})
		smMust(t, err, "create again")
		if aws.ToString(again.ARN) != aws.ToString(created.ARN) {
			t.Errorf("ARN = %s, want %s", aws.ToString(again.ARN), aws.ToString(created.ARN))
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("iam-key-rotation/alice"), SecretString: aws.String("x")})
		smWantCode(t, err, "ResourceExistsException")
		_, err = e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("bad name!"), SecretString: aws.String("x")})
		smWantCode(t, err, "InvalidParameterException")
		_, err = e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(strings.Repeat("n", 513))})
		smWantCode(t, err, "ValidationException")
		_, err = e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("big"), SecretString: aws.String(strings.Repeat("x", 65537))})
		smWantCode(t, err, "ValidationException")
		_, err = e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("both"), SecretString: aws.String("x"), SecretBinary: []byte("y")})
		smWantCode(t, err, "InvalidParameterException")
		_, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("nope")})
		smWantCode(t, err, "ResourceNotFoundException")
		_, err = e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("nope")})
		smWantCode(t, err, "ResourceNotFoundException")
		_, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("iam-key-rotation/alice"), VersionStage: aws.String("AWSPENDING")})
		apiErr := smWantCode(t, err, "ResourceNotFoundException")
		if got, want := apiErr.ErrorMessage(), "Secrets Manager can't find the specified secret value for staging label: AWSPENDING"; got != want {
			t.Errorf("message = %q, want %q", got, want)
		}
		_, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("iam-key-rotation/alice"), VersionId: aws.String(smToken("none"))})
		smWantCode(t, err, "ResourceNotFoundException")
	})

	t.Run("a secret without a value has no versions", func(t *testing.T) {
		out, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("empty")})
		smMust(t, err, "create")
		if out.VersionId != nil {
			t.Errorf("VersionId = %q, want none", *out.VersionId)
		}
		_, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("empty")})
		smWantCode(t, err, "ResourceNotFoundException")
		if v := e.versions(t, "empty", true); len(v) != 0 {
			t.Errorf("versions = %v, want none", v)
		}
	})

	t.Run("binary", func(t *testing.T) {
		bin := []byte{0, 1, 2, 0xff}
		_, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("bin"), SecretBinary: bin})
		smMust(t, err, "create")
		v, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("bin")})
		smMust(t, err, "get")
		if !bytes.Equal(v.SecretBinary, bin) || v.SecretString != nil {
			t.Errorf("SecretBinary = %v, SecretString = %v", v.SecretBinary, v.SecretString)
		}
	})
}

func TestSecretsManagerUpdateSecret(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	e.create(t, "s", "v1")
	out, err := e.sm.UpdateSecret(ctx, &secretsmanager.UpdateSecretInput{
		SecretId: aws.String("s"), Description: aws.String("new"), SecretString: aws.String("v2"),
	})
	smMust(t, err, "update")
	v, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")})
	smMust(t, err, "get")
	if aws.ToString(v.SecretString) != "v2" || aws.ToString(v.VersionId) != aws.ToString(out.VersionId) {
		t.Errorf("got %q version %s", aws.ToString(v.SecretString), aws.ToString(v.VersionId))
	}
	d, err := e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("s")})
	smMust(t, err, "describe")
	if aws.ToString(d.Description) != "new" {
		t.Errorf("Description = %q", aws.ToString(d.Description))
	}
}

func TestSecretsManagerPutSecretValueIdempotency(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	e.create(t, "s", "v0")
	tok := smToken("put-1")
	put := func(value string) (*secretsmanager.PutSecretValueOutput, error) {
		return e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
			SecretId: aws.String("s"), ClientRequestToken: aws.String(tok), SecretString: aws.String(value),
		})
	}
	first, err := put("v1")
	smMust(t, err, "first put")
	if got := aws.ToString(first.VersionId); got != tok {
		t.Errorf("VersionId = %q, want %q", got, tok)
	}
	again, err := put("v1")
	smMust(t, err, "same token, same value")
	if got := aws.ToString(again.VersionId); got != tok {
		t.Errorf("retry VersionId = %q, want %q", got, tok)
	}
	if got := len(e.versions(t, "s", true)); got != 2 {
		t.Errorf("versions after a retry = %d, want 2", got)
	}
	_, err = put("different")
	smWantCode(t, err, "ResourceExistsException")

	_, err = e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("s")})
	smWantCode(t, err, "InvalidRequestException")
	_, err = e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("s"), SecretString: aws.String("x"), SecretBinary: []byte("x")})
	smWantCode(t, err, "InvalidParameterException")
	_, err = e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("s"), SecretString: aws.String("x"), ClientRequestToken: aws.String("short")})
	smWantCode(t, err, "ValidationException")
	_, err = e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("missing"), SecretString: aws.String("x")})
	smWantCode(t, err, "ResourceNotFoundException")
}

func TestSecretsManagerLabels(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	v1 := aws.ToString(e.create(t, "s", "one").VersionId)
	v2 := aws.ToString(e.put(t, "s", "two").VersionId)
	v3 := aws.ToString(e.put(t, "s", "three").VersionId)

	stagesOf := func(t *testing.T, deprecated bool) map[string][]string {
		t.Helper()
		return e.versions(t, "s", deprecated)
	}
	check := func(t *testing.T, want map[string]string) {
		t.Helper()
		got := stagesOf(t, true)
		for id, stages := range got {
			if w := want[id]; strings.Join(stages, ",") != w {
				t.Errorf("version %s stages = %v, want %q", id, stages, w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("got %d versions, want %d", len(got), len(want))
		}
	}
	check(t, map[string]string{v1: "", v2: "AWSPREVIOUS", v3: "AWSCURRENT"})
	if got := stagesOf(t, false); len(got) != 2 {
		t.Errorf("without deprecated: %v, want 2 versions", got)
	}

	pending := aws.ToString(e.put(t, "s", "four", "AWSPENDING").VersionId)
	check(t, map[string]string{v1: "", v2: "AWSPREVIOUS", v3: "AWSCURRENT", pending: "AWSPENDING"})
	v, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s"), VersionStage: aws.String("AWSPENDING")})
	smMust(t, err, "get pending")
	if aws.ToString(v.SecretString) != "four" {
		t.Errorf("pending value = %q", aws.ToString(v.SecretString))
	}

	move := func(stage, to, from string) error {
		in := &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("s"), VersionStage: aws.String(stage)}
		if to != "" {
			in.MoveToVersionId = aws.String(to)
		}
		if from != "" {
			in.RemoveFromVersionId = aws.String(from)
		}
		_, err := e.sm.UpdateSecretVersionStage(ctx, in)
		return err
	}
	smWantCode(t, move("AWSCURRENT", pending, ""), "InvalidParameterException")
	smWantCode(t, move("AWSCURRENT", pending, v2), "InvalidParameterException")
	smWantCode(t, move("AWSCURRENT", "", v3), "InvalidParameterException")
	smWantCode(t, move("AWSCURRENT", smToken("nope"), v3), "InvalidParameterException")
	check(t, map[string]string{v1: "", v2: "AWSPREVIOUS", v3: "AWSCURRENT", pending: "AWSPENDING"})

	smMust(t, move("AWSCURRENT", pending, v3), "promote pending")
	check(t, map[string]string{v1: "", v2: "", v3: "AWSPREVIOUS", pending: "AWSCURRENT,AWSPENDING"})
	smMust(t, move("AWSPENDING", "", pending), "remove pending")
	check(t, map[string]string{v1: "", v2: "", v3: "AWSPREVIOUS", pending: "AWSCURRENT"})
	smMust(t, move("KEEP", v1, ""), "attach a new label")
	check(t, map[string]string{v1: "KEEP", v2: "", v3: "AWSPREVIOUS", pending: "AWSCURRENT"})

	// A put naming a label another version has takes it from that version.
	v5 := aws.ToString(e.put(t, "s", "five", "KEEP").VersionId)
	check(t, map[string]string{v1: "", v2: "", v3: "AWSPREVIOUS", pending: "AWSCURRENT", v5: "KEEP"})

	v, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s"), VersionId: aws.String(v1)})
	smMust(t, err, "get deprecated version by id")
	if aws.ToString(v.SecretString) != "one" || len(v.VersionStages) != 0 {
		t.Errorf("v1 = %q %v", aws.ToString(v.SecretString), v.VersionStages)
	}
	_, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s"), VersionId: aws.String(v1), VersionStage: aws.String("AWSCURRENT")})
	smWantCode(t, err, "ResourceNotFoundException")
}

func TestSecretsManagerVersionQuota(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	first := aws.ToString(e.create(t, "q", "value-0").VersionId)
	// Pin a label on the oldest version: labelled versions are never pruned.
	_, err := e.sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: aws.String("q"), VersionStage: aws.String("PINNED"), MoveToVersionId: aws.String(first),
	})
	smMust(t, err, "pin")

	// 100 writes within an hour: the creation and 99 puts, 30 seconds apart.
	var ids []string
	ids = append(ids, first)
	for i := 1; i < 100; i++ {
		e.clock.Advance(30 * time.Second)
		ids = append(ids, aws.ToString(e.put(t, "q", fmt.Sprintf("value-%d", i)).VersionId))
	}
	if got := len(e.versions(t, "q", true)); got != 100 {
		t.Fatalf("versions = %d, want 100", got)
	}
	e.clock.Advance(30 * time.Second)
	_, err = e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("q"), SecretString: aws.String("value-100")})
	smWantCode(t, err, "LimitExceededException")
	// Nothing changed.
	cur, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("q")})
	smMust(t, err, "get current")
	if got, want := aws.ToString(cur.SecretString), "value-99"; got != want {
		t.Errorf("current = %q, want %q", got, want)
	}
	if got := len(e.versions(t, "q", true)); got != 100 {
		t.Errorf("versions after the failed write = %d, want 100", got)
	}

	// 24 hours later the oldest unlabelled versions can go.
	e.clock.Advance(24 * time.Hour)
	for i := 100; i < 110; i++ {
		e.put(t, "q", fmt.Sprintf("value-%d", i))
	}
	vers := e.versions(t, "q", true)
	if got := len(vers); got != 100 {
		t.Errorf("versions = %d, want 100", got)
	}
	if _, ok := vers[first]; !ok {
		t.Errorf("the labelled first version was pruned")
	}
	for i, id := range ids[1:11] {
		if _, ok := vers[id]; ok {
			t.Errorf("version %d (%s) was not pruned", i+1, id)
		}
	}
	if _, ok := vers[ids[11]]; !ok {
		t.Errorf("version 11 was pruned, want only the 10 oldest unlabelled ones")
	}
	_, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("q"), VersionId: aws.String(ids[1])})
	smWantCode(t, err, "ResourceNotFoundException")

	// The 89 remaining old unlabelled versions can go, but then the young
	// ones can't.
	for i := 110; i < 199; i++ {
		e.clock.Advance(time.Second)
		e.put(t, "q", fmt.Sprintf("value-%d", i))
	}
	_, err = e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("q"), SecretString: aws.String("value-199")})
	smWantCode(t, err, "LimitExceededException")
}

func TestSecretsManagerTags(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	e.create(t, "s", "v")
	tag := func(k, v string) smtypes.Tag { return smtypes.Tag{Key: aws.String(k), Value: aws.String(v)} }
	_, err := e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("s"), Tags: []smtypes.Tag{tag("a", "1"), tag("b", "2")}})
	smMust(t, err, "tag")
	_, err = e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("s"), Tags: []smtypes.Tag{tag("a", "3")}})
	smMust(t, err, "retag")
	_, err = e.sm.UntagResource(ctx, &secretsmanager.UntagResourceInput{SecretId: aws.String("s"), TagKeys: []string{"b", "absent"}})
	smMust(t, err, "untag")
	d, err := e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("s")})
	smMust(t, err, "describe")
	if len(d.Tags) != 1 || aws.ToString(d.Tags[0].Key) != "a" || aws.ToString(d.Tags[0].Value) != "3" {
		t.Errorf("tags = %+v, want a=3", d.Tags)
	}

	var many []smtypes.Tag
	for i := range 50 {
		many = append(many, tag(fmt.Sprintf("k%d", i), "v"))
	}
	_, err = e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("s"), Tags: many})
	smWantCode(t, err, "InvalidParameterException") // 51 with "a"
	_, err = e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("s"), Tags: []smtypes.Tag{tag("aws:x", "v")}})
	smWantCode(t, err, "InvalidParameterException")
	_, err = e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("s"), Tags: []smtypes.Tag{tag(strings.Repeat("k", 129), "v")}})
	smWantCode(t, err, "ValidationException")
	_, err = e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("s"), Tags: []smtypes.Tag{tag("k", strings.Repeat("v", 257))}})
	smWantCode(t, err, "ValidationException")
	_, err = e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("s"), Tags: []smtypes.Tag{tag("k#", "v")}})
	smWantCode(t, err, "ValidationException")
	_, err = e.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("missing"), Tags: []smtypes.Tag{tag("k", "v")}})
	smWantCode(t, err, "ResourceNotFoundException")
}

func TestSecretsManagerDeleteAndRestore(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	e.create(t, "s", "v")

	_, err := e.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("s"), RecoveryWindowInDays: aws.Int64(3)})
	smWantCode(t, err, "InvalidParameterException")
	_, err = e.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("s"), RecoveryWindowInDays: aws.Int64(7), ForceDeleteWithoutRecovery: aws.Bool(true)})
	smWantCode(t, err, "InvalidParameterException")

	del, err := e.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("s")})
	smMust(t, err, "delete")
	if want := smT0.AddDate(0, 0, 30); del.DeletionDate == nil || !del.DeletionDate.Equal(want) {
		t.Errorf("DeletionDate = %v, want %v", del.DeletionDate, want)
	}
	_, err = e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")})
	apiErr := smWantCode(t, err, "InvalidRequestException")
	if !strings.Contains(apiErr.ErrorMessage(), "marked for deletion") {
		t.Errorf("message = %q", apiErr.ErrorMessage())
	}
	_, err = e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("s"), SecretString: aws.String("x")})
	smWantCode(t, err, "InvalidRequestException")
	_, err = e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("s"), SecretString: aws.String("x")})
	smWantCode(t, err, "InvalidRequestException")
	d, err := e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("s")})
	smMust(t, err, "describe a deleted secret")
	if d.DeletedDate == nil || !d.DeletedDate.Equal(smT0) {
		t.Errorf("DeletedDate = %v, want %v", d.DeletedDate, smT0)
	}

	_, err = e.sm.RestoreSecret(ctx, &secretsmanager.RestoreSecretInput{SecretId: aws.String("s")})
	smMust(t, err, "restore")
	v, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")})
	smMust(t, err, "get after restore")
	if aws.ToString(v.SecretString) != "v" {
		t.Errorf("value = %q", aws.ToString(v.SecretString))
	}

	t.Run("the recovery window ends", func(t *testing.T) {
		_, err := e.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("s"), RecoveryWindowInDays: aws.Int64(7)})
		smMust(t, err, "delete")
		e.clock.Advance(7*24*time.Hour - time.Second)
		_, err = e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("s")})
		smMust(t, err, "describe just before the end")
		e.clock.Advance(time.Second)
		_, err = e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("s")})
		smWantCode(t, err, "ResourceNotFoundException")
		e.create(t, "s", "new")
	})

	t.Run("force delete", func(t *testing.T) {
		_, err := e.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("s"), ForceDeleteWithoutRecovery: aws.Bool(true)})
		smMust(t, err, "force delete")
		_, err = e.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("s")})
		smWantCode(t, err, "ResourceNotFoundException")
		_, err = e.sm.RestoreSecret(ctx, &secretsmanager.RestoreSecretInput{SecretId: aws.String("s")})
		smWantCode(t, err, "ResourceNotFoundException")
		e.create(t, "s", "again")
	})
}

func TestSecretsManagerListSecrets(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	for i := range 250 {
		env := "prod"
		if i%2 == 1 {
			env = "dev"
		}
		in := &secretsmanager.CreateSecretInput{
			Name:         aws.String(fmt.Sprintf("app/svc-%03d", i)),
			SecretString: aws.String("v"),
			Description:  aws.String(fmt.Sprintf("Service Number %d", i)),
			Tags:         []smtypes.Tag{{Key: aws.String("env"), Value: aws.String(env)}},
		}
		if i%10 == 0 {
			in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String("team-core"), Value: aws.String("yes")})
		}
		_, err := e.sm.CreateSecret(ctx, in)
		smMust(t, err, "create")
		e.clock.Advance(time.Second)
	}
	_, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("other/deleted"), SecretString: aws.String("v")})
	smMust(t, err, "create")
	_, err = e.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("other/deleted")})
	smMust(t, err, "delete")

	list := func(t *testing.T, in *secretsmanager.ListSecretsInput) (names []string, pages int) {
		t.Helper()
		p := secretsmanager.NewListSecretsPaginator(e.sm, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			smMust(t, err, "list secrets")
			pages++
			for _, s := range page.SecretList {
				names = append(names, aws.ToString(s.Name))
			}
		}
		return names, pages
	}
	f := func(key smtypes.FilterNameStringType, values ...string) smtypes.Filter {
		return smtypes.Filter{Key: key, Values: values}
	}

	t.Run("pagination", func(t *testing.T) {
		names, pages := list(t, &secretsmanager.ListSecretsInput{})
		if len(names) != 250 || pages != 3 {
			t.Fatalf("got %d secrets in %d pages, want 250 in 3", len(names), pages)
		}
		for i, n := range names {
			if want := fmt.Sprintf("app/svc-%03d", i); n != want {
				t.Fatalf("secret %d = %q, want %q (by creation date)", i, n, want)
			}
		}
		names, pages = list(t, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(7), SortOrder: smtypes.SortOrderTypeDesc})
		if len(names) != 250 || pages != 36 || names[0] != "app/svc-249" {
			t.Errorf("got %d secrets in %d pages, first %q", len(names), pages, names[0])
		}
		names, _ = list(t, &secretsmanager.ListSecretsInput{IncludePlannedDeletion: aws.Bool(true)})
		if len(names) != 251 {
			t.Errorf("with planned deletion: %d secrets, want 251", len(names))
		}
		out, err := e.sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(1)})
		smMust(t, err, "list one")
		s := out.SecretList[0]
		if s.ARN == nil || s.CreatedDate == nil || len(s.SecretVersionsToStages) != 1 || len(s.Tags) != 2 || aws.ToString(s.Description) != "Service Number 0" {
			t.Errorf("entry = %+v", s)
		}
	})

	tests := []struct {
		name    string
		filters []smtypes.Filter
		want    int
	}{
		{"name prefix", []smtypes.Filter{f("name", "app/svc-1")}, 100},
		{"name is case-sensitive", []smtypes.Filter{f("name", "App/")}, 0},
		{"name values are ORed", []smtypes.Filter{f("name", "app/svc-00", "app/svc-01")}, 20},
		{"name negation", []smtypes.Filter{f("name", "!app/svc-1")}, 150},
		{"tag-key", []smtypes.Filter{f("tag-key", "team")}, 25},
		{"tag-value", []smtypes.Filter{f("tag-value", "prod")}, 125},
		{"tag-value negation", []smtypes.Filter{f("tag-value", "!prod")}, 125},
		{"description is case-insensitive", []smtypes.Filter{f("description", "service number 1")}, 111},
		{"filters are ANDed", []smtypes.Filter{f("name", "app/svc-1"), f("tag-value", "dev")}, 50},
		{"primary-region", []smtypes.Filter{f("primary-region", "us-east")}, 250},
		{"owning-service", []smtypes.Filter{f("owning-service", "rds")}, 0},
		{"all, words", []smtypes.Filter{f("all", "svc")}, 250},
		{"all, tag word", []smtypes.Filter{f("all", "core")}, 25},
		{"all negated", []smtypes.Filter{f("all", "!core")}, 225},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, _ := list(t, &secretsmanager.ListSecretsInput{Filters: tt.filters})
			if got := len(names); got != tt.want {
				t.Errorf("got %d secrets, want %d", got, tt.want)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		_, err := e.sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{NextToken: aws.String("garbage")})
		smWantCode(t, err, "InvalidNextTokenException")
		_, err = e.sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(101)})
		smWantCode(t, err, "ValidationException")
		_, err = e.sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{Filters: []smtypes.Filter{f("color", "x")}})
		smWantCode(t, err, "ValidationException")
	})
}

func TestSecretsManagerBatchGetSecretValue(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	for i := range 30 {
		e.create(t, fmt.Sprintf("batch/%02d", i), fmt.Sprintf("value-%d", i))
	}
	out, err := e.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{
		SecretIdList: []string{"batch/00", "batch/01", "missing", "batch/02"},
	})
	smMust(t, err, "batch by id")
	if len(out.SecretValues) != 3 || len(out.Errors) != 1 {
		t.Fatalf("got %d values and %d errors, want 3 and 1", len(out.SecretValues), len(out.Errors))
	}
	if got := aws.ToString(out.SecretValues[1].SecretString); got != "value-1" {
		t.Errorf("value = %q", got)
	}
	if got := aws.ToString(out.Errors[0].ErrorCode); got != "ResourceNotFoundException" || aws.ToString(out.Errors[0].SecretId) != "missing" {
		t.Errorf("error = %s for %s", got, aws.ToString(out.Errors[0].SecretId))
	}

	var total, pages int
	p := secretsmanager.NewBatchGetSecretValuePaginator(e.sm, &secretsmanager.BatchGetSecretValueInput{
		Filters:    []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"batch/"}}},
		MaxResults: aws.Int32(8),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		smMust(t, err, "batch by filter")
		total += len(page.SecretValues)
		pages++
	}
	if total != 30 || pages != 4 {
		t.Errorf("got %d values in %d pages, want 30 in 4", total, pages)
	}

	_, err = e.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{
		SecretIdList: []string{"batch/00"},
		Filters:      []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"batch/"}}},
	})
	smWantCode(t, err, "InvalidParameterException")
	var ids []string
	for i := range 21 {
		ids = append(ids, fmt.Sprintf("batch/%02d", i))
	}
	_, err = e.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: ids})
	smWantCode(t, err, "ValidationException")
}

// createUser makes an IAM user with an access key in the sandbox and returns
// its ARN and a config signed with its key.
func smCreateUser(t testing.TB, e *smEnv, name string) (string, aws.Config) {
	t.Helper()
	ctx := context.Background()
	ic := iam.NewFromConfig(e.cfg)
	u, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)})
	smMust(t, err, "create user")
	k, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	smMust(t, err, "create access key")
	return aws.ToString(u.User.Arn), sandboxtest.UserConfig(t, e.srv, aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey))
}

func TestSecretsManagerResourcePolicy(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	aliceARN, aliceCfg := smCreateUser(t, e, "alice")
	bobARN, _ := smCreateUser(t, e, "bob")
	alice := secretsmanager.NewFromConfig(aliceCfg)
	secret := e.create(t, "iam-key-rotation/alice", "next key")
	other := e.create(t, "iam-key-rotation/bob", "bob's key")

	get := func(id string) error {
		_, err := alice.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
		return err
	}
	describe := func(id string) error {
		_, err := alice.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(id)})
		return err
	}
	policy := func(effect, principal, action, resource string) string {
		return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":%q,"Principal":%s,"Action":%s,"Resource":%q}]}`,
			effect, principal, action, resource)
	}
	setPolicy := func(t *testing.T, id, doc string) {
		t.Helper()
		_, err := e.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(id), ResourcePolicy: aws.String(doc)})
		smMust(t, err, "put resource policy")
	}

	smWantCode(t, get("iam-key-rotation/alice"), "AccessDeniedException")
	smWantCode(t, get("does-not-exist"), "AccessDeniedException")

	tests := []struct {
		name        string
		doc         string
		get, descr  bool
		getOther    bool
		listVersion bool
	}{
		{"user, exact action", policy("Allow", fmt.Sprintf(`{"AWS":%q}`, aliceARN), `"secretsmanager:GetSecretValue"`, "*"), true, false, false, false},
		{"user in a list, Get* wildcard", policy("Allow", fmt.Sprintf(`{"AWS":[%q,%q]}`, bobARN, aliceARN), `["secretsmanager:Get*"]`, "*"), true, false, false, false},
		{"everyone, all actions", policy("Allow", `"*"`, `"secretsmanager:*"`, "*"), true, true, false, true},
		{"another user", policy("Allow", fmt.Sprintf(`{"AWS":%q}`, bobARN), `"secretsmanager:*"`, "*"), false, false, false, false},
		{"another action", policy("Allow", fmt.Sprintf(`{"AWS":%q}`, aliceARN), `"secretsmanager:DescribeSecret"`, "*"), false, true, false, false},
		{"resource by ARN", policy("Allow", fmt.Sprintf(`{"AWS":%q}`, aliceARN), `"secretsmanager:GetSecretValue"`, aws.ToString(secret.ARN)), true, false, false, false},
		{"resource wildcard", policy("Allow", fmt.Sprintf(`{"AWS":%q}`, aliceARN), `"secretsmanager:*"`, "arn:aws:secretsmanager:*:*:secret:iam-key-rotation/alice-*"), true, true, false, true},
		{"other resource", policy("Allow", fmt.Sprintf(`{"AWS":%q}`, aliceARN), `"secretsmanager:*"`, aws.ToString(other.ARN)), false, false, false, false},
		{"deny wins", `{"Version":"2012-10-17","Statement":[` +
			`{"Effect":"Allow","Principal":"*","Action":"secretsmanager:*","Resource":"*"},` +
			fmt.Sprintf(`{"Effect":"Deny","Principal":{"AWS":%q},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`, aliceARN),
			false, true, false, true},
		{"condition is not evaluated", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"secretsmanager:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}`,
			false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setPolicy(t, "iam-key-rotation/alice", tt.doc)
			check := func(what string, err error, want bool) {
				t.Helper()
				if want {
					smMust(t, err, what)
				} else {
					smWantCode(t, err, "AccessDeniedException")
				}
			}
			check("get", get("iam-key-rotation/alice"), tt.get)
			check("get by ARN", get(aws.ToString(secret.ARN)), tt.get)
			check("describe", describe("iam-key-rotation/alice"), tt.descr)
			check("get other", get("iam-key-rotation/bob"), tt.getOther)
			_, err := alice.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: aws.String("iam-key-rotation/alice")})
			check("list versions", err, tt.listVersion)
			// Writes and listings are never allowed to users.
			_, err = alice.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("iam-key-rotation/alice"), SecretString: aws.String("x")})
			check("put", err, false)
			_, err = alice.ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
			check("list", err, false)
		})
	}

	t.Run("get, delete", func(t *testing.T) {
		doc := policy("Allow", fmt.Sprintf(`{"AWS":%q}`, aliceARN), `"secretsmanager:GetSecretValue"`, "*")
		setPolicy(t, "iam-key-rotation/alice", doc)
		got, err := e.sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String("iam-key-rotation/alice")})
		smMust(t, err, "get resource policy")
		if aws.ToString(got.ResourcePolicy) != doc || aws.ToString(got.ARN) != aws.ToString(secret.ARN) {
			t.Errorf("policy = %q", aws.ToString(got.ResourcePolicy))
		}
		smMust(t, get("iam-key-rotation/alice"), "get with policy")
		_, err = e.sm.DeleteResourcePolicy(ctx, &secretsmanager.DeleteResourcePolicyInput{SecretId: aws.String("iam-key-rotation/alice")})
		smMust(t, err, "delete resource policy")
		smWantCode(t, get("iam-key-rotation/alice"), "AccessDeniedException")
		got, err = e.sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String("iam-key-rotation/alice")})
		smMust(t, err, "get resource policy")
		if got.ResourcePolicy != nil {
			t.Errorf("policy = %q, want none", *got.ResourcePolicy)
		}
	})

	t.Run("bad policies", func(t *testing.T) {
		for _, doc := range []string{`not json`, `{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"*"}]}`, `{"Version":"2012-10-17"}`} {
			_, err := e.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String("iam-key-rotation/alice"), ResourcePolicy: aws.String(doc)})
			smWantCode(t, err, "MalformedPolicyDocumentException")
		}
		_, err := e.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{
			SecretId: aws.String("iam-key-rotation/alice"), BlockPublicPolicy: aws.Bool(true),
			ResourcePolicy: aws.String(policy("Allow", `"*"`, `"secretsmanager:*"`, "*")),
		})
		smWantCode(t, err, "PublicPolicyException")
	})
}

// signedRequest sends a raw Secrets Manager request signed with the admin key.
func smSignedRequest(t testing.TB, e *smEnv, target string, body []byte) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL()+"/", bytes.NewReader(body))
	smMust(t, err, "new request")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", target)
	sum := sha256.Sum256(body)
	creds, err := e.cfg.Credentials.Retrieve(context.Background())
	smMust(t, err, "credentials")
	err = v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "secretsmanager", "us-east-1", time.Now())
	smMust(t, err, "sign")
	resp, err := http.DefaultClient.Do(req)
	smMust(t, err, "do")
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	smMust(t, err, "read")
	var out map[string]string
	_ = json.Unmarshal(b, &out)
	if out == nil {
		out = map[string]string{"raw": string(b)}
	}
	return resp.StatusCode, out
}

func TestSecretsManagerMalformedRequests(t *testing.T) {
	e := newSMEnv(t)
	e.create(t, "s", "v")
	tests := []struct {
		name, target, body, code string
	}{
		{"malformed JSON", "secretsmanager.GetSecretValue", `{"SecretId":`, "SerializationException"},
		{"wrong type", "secretsmanager.GetSecretValue", `{"SecretId":42}`, "SerializationException"},
		{"missing SecretId", "secretsmanager.GetSecretValue", `{}`, "ValidationException"},
		{"unknown operation", "secretsmanager.FlyToTheMoon", `{}`, "UnknownOperationException"},
		{"unsupported operation", "secretsmanager.RotateSecret", `{"SecretId":"s"}`, "UnknownOperationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := smSignedRequest(t, e, tt.target, []byte(tt.body))
			if status != http.StatusBadRequest || out["__type"] != tt.code {
				t.Errorf("got %d %v, want 400 %s", status, out, tt.code)
			}
		})
	}
	t.Run("empty body is an empty request", func(t *testing.T) {
		status, out := smSignedRequest(t, e, "secretsmanager.ListSecrets", nil)
		if status != http.StatusOK {
			t.Errorf("got %d %v, want 200", status, out)
		}
	})
}

func TestSecretsManagerPersistence(t *testing.T) {
	dir := t.TempDir()
	clock := sandboxtest.NewClock(smT0)
	ctx := context.Background()
	srv, err := sandbox.New(sandbox.Options{Clock: clock, DataDir: dir, Seed: 3})
	smMust(t, err, "new sandbox")
	smMust(t, srv.Start(ctx, "127.0.0.1:0"), "start")
	e := &smEnv{srv: srv, clock: clock, cfg: sandboxtest.Config(t, srv)}
	e.sm = secretsmanager.NewFromConfig(e.cfg)
	created := e.create(t, "persist/me", "v1")
	e.put(t, "persist/me", "v2")
	_, err = e.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String("persist/me"),
		ResourcePolicy: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:*","Resource":"*"}]}`)})
	smMust(t, err, "put policy")
	smMust(t, srv.Close(ctx), "close")

	e2 := &smEnv{srv: sandboxtest.Start(t, sandbox.Options{Clock: clock, DataDir: dir, Seed: 3}), clock: clock}
	e2.cfg = sandboxtest.Config(t, e2.srv)
	e2.sm = secretsmanager.NewFromConfig(e2.cfg)
	v, err := e2.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: created.ARN})
	smMust(t, err, "get after restart")
	if aws.ToString(v.SecretString) != "v2" {
		t.Errorf("value = %q, want v2", aws.ToString(v.SecretString))
	}
	if got := len(e2.versions(t, "persist/me", false)); got != 2 {
		t.Errorf("versions = %d, want 2", got)
	}
	p, err := e2.sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String("persist/me")})
	smMust(t, err, "get policy")
	if p.ResourcePolicy == nil {
		t.Errorf("policy lost")
	}
}

func TestSecretsManagerConcurrency(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	e.create(t, "shared", "v")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := fmt.Sprintf("own-%d", w)
			if _, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(own), SecretString: aws.String("0")}); err != nil {
				errs <- err
				return
			}
			for i := range 20 {
				if _, err := e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(own), SecretString: aws.String(fmt.Sprint(i))}); err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					if _, err := e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("shared"), SecretString: aws.String(fmt.Sprint(w, i))}); err != nil {
						errs <- err
						return
					}
				}
				if _, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("shared")}); err != nil {
					errs <- err
					return
				}
				if _, err := e.sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(e.versions(t, "shared", true)); got != 81 {
		t.Errorf("shared versions = %d, want 81 (1 + 8*10 writes)", got)
	}
}

func BenchmarkSandboxGetSecretValue(b *testing.B) {
	srv := sandboxtest.Start(b, sandbox.Options{})
	sm := secretsmanager.NewFromConfig(sandboxtest.Config(b, srv))
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("bench"), SecretString: aws.String(`{"k":"v"}`)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("bench")}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A lost response: the call takes effect, then the client is told it
// failed. The SDK's retry with the same ClientRequestToken and value is
// then answered as the idempotent repeat it is.
func TestLostResponse(t *testing.T) {
	e := newSMEnv(t)
	e.create(t, "lost", `{"v":1}`)
	e.srv.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Operation: "PutSecretValue", Kind: sandbox.FaultLostResponse, Count: 1}}})
	put := func(noRetry bool) (*secretsmanager.PutSecretValueOutput, error) {
		return e.sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{
			SecretId: aws.String("lost"), ClientRequestToken: aws.String(smToken("v2")),
			SecretString: aws.String(`{"v":2}`), VersionStages: []string{"AWSPENDING"},
		}, func(o *secretsmanager.Options) {
			if noRetry {
				o.RetryMaxAttempts = 1
			}
		})
	}
	_, err := put(true)
	smWantCode(t, err, "InternalServiceError")
	got, err := e.sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("lost"), VersionStage: aws.String("AWSPENDING")})
	smMust(t, err, "read the version whose response was lost")
	if v := aws.ToString(got.SecretString); v != `{"v":2}` || aws.ToString(got.VersionId) != smToken("v2") {
		t.Errorf("pending = %s %s, want the value written by the call whose response was lost", aws.ToString(got.VersionId), v)
	}
	if _, err := put(false); err != nil {
		t.Errorf("repeat with the same token and value: %v", err)
	}
	if n := len(e.srv.Faults().Rules); n != 0 {
		t.Errorf("spent rule still listed: %+v", e.srv.Faults().Rules)
	}

	// Set through the admin endpoint, as the example has it.
	resp, err := http.Post(e.srv.URL()+"/_sandbox/faults", "application/json",
		strings.NewReader(`{"rules":[{"operation":"PutSecretValue","kind":"lost_response","count":1}]}`))
	smMust(t, err, "POST faults")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST faults status = %d", resp.StatusCode)
	}
	if f := e.srv.Faults(); len(f.Rules) != 1 || f.Rules[0].Kind != sandbox.FaultLostResponse {
		t.Errorf("faults = %+v", f)
	}
}

// AWS, PutSecretValue: "If this operation creates the first version for the
// secret, then Secrets Manager automatically attaches the staging label
// AWSCURRENT to it", whatever VersionStages says; later versions get only
// the labels they ask for.
func TestSecretsManagerFirstVersionIsCurrent(t *testing.T) {
	e := newSMEnv(t)
	ctx := context.Background()
	_, err := e.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("ring/1")})
	smMust(t, err, "create secret without a value")
	first := e.put(t, "ring/1", "pending key", "AWSPENDING")
	if got, want := strings.Join(first.VersionStages, ","), "AWSCURRENT,AWSPENDING"; got != want {
		t.Errorf("first version's returned stages = %q, want %q", got, want)
	}
	v1 := aws.ToString(first.VersionId)
	cur, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("ring/1")})
	smMust(t, err, "get current")
	if aws.ToString(cur.SecretString) != "pending key" {
		t.Errorf("AWSCURRENT = %q, want the first version", aws.ToString(cur.SecretString))
	}
	v2 := aws.ToString(e.put(t, "ring/1", "second pending", "AWSPENDING").VersionId)
	got := e.versions(t, "ring/1", true)
	if s := strings.Join(got[v1], ","); s != "AWSCURRENT" {
		t.Errorf("first version after a second pending = %q, want AWSCURRENT", s)
	}
	if s := strings.Join(got[v2], ","); s != "AWSPENDING" {
		t.Errorf("second version = %q, want AWSPENDING only", s)
	}
	// A retry of the first put is still the same version, with its labels.
	again, err := e.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("ring/1"), ClientRequestToken: aws.String(v1), SecretString: aws.String("pending key"), VersionStages: []string{"AWSPENDING"}})
	smMust(t, err, "retry first put")
	if aws.ToString(again.VersionId) != v1 {
		t.Errorf("retry made version %s, want %s", aws.ToString(again.VersionId), v1)
	}
}
