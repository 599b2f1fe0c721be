package secretsmanager_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot/secretsmanager"
)

// fuzzAPI answers DescribeSecret with fuzzed tags and GetSecretValue with
// a fuzzed value; any other call panics (Load makes none).
type fuzzAPI struct {
	secretsmanager.API
	tags  []types.Tag
	value string
}

func (a *fuzzAPI) DescribeSecret(context.Context, *awssm.DescribeSecretInput, ...func(*awssm.Options)) (*awssm.DescribeSecretOutput, error) {
	return &awssm.DescribeSecretOutput{Tags: a.tags}, nil
}

func (a *fuzzAPI) GetSecretValue(_ context.Context, in *awssm.GetSecretValueInput, _ ...func(*awssm.Options)) (*awssm.GetSecretValueOutput, error) {
	if strings.HasSuffix(aws.ToString(in.SecretId), "/9") {
		return nil, &smithy.GenericAPIError{Code: "ResourceNotFoundException", Message: "no such secret"}
	}
	return &awssm.GetSecretValueOutput{SecretString: aws.String(a.value), VersionId: aws.String("v1")}, nil
}

// FuzzLoad: a secret's tags and values are outside input (anyone with
// TagResource or PutSecretValue can write them). Whatever they hold, Load
// never panics, never puts the value in an error, and a key it returns
// has an id.
func FuzzLoad(f *testing.F) {
	const exampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	const value = `{"UserName":"app","AccessKeyId":"AKIAFUZZ","SecretAccessKey":"` + exampleSecret + `","CreateDate":"2026-01-01T00:00:00Z","Generation":3}`
	for _, tags := range []string{
		"keyrot:user=app\nkeyrot:generation=3\nkeyrot:current-secret=iam-key-rotation/app\nkeyrot:timings=5m 2m 1s",
		"keyrot:user=app\nkeyrot:intent=4 1 2026-01-01T00:00:00Z\nkeyrot:last-intent=4",
		"keyrot:user=app\nkeyrot:intent=4 9 2026-01-01T00:00:00Z",
		"keyrot:user=app\nkeyrot:intent=x -1 yesterday",
		"keyrot:user=app\nkeyrot:inactive:AKIA1=2026-01-01T00:00:00Z\nkeyrot:seen:AKIA2=bad\nkeyrot:warned:key_in_use=AKIA1 2026-01-01T00:00:00Z\nkeyrot:report:AKIA3=key_created",
		"keyrot:user=someone-else",
	} {
		f.Add(tags, value)
		f.Add(tags, `{"AccessKeyId":""}`)
		f.Add(tags, "not json: "+exampleSecret)
	}
	f.Fuzz(func(t *testing.T, tagText, value string) {
		api := &fuzzAPI{value: value}
		for _, line := range strings.Split(tagText, "\n") {
			k, v, _ := strings.Cut(line, "=")
			api.tags = append(api.tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		st, err := secretsmanager.New(api, secretsmanager.Config{}).Load(context.Background(), "app")
		if err != nil {
			if strings.Contains(value, exampleSecret) && strings.Contains(err.Error(), exampleSecret) {
				t.Fatalf("error holds the secret value: %v", err)
			}
			return
		}
		if st.Current != nil && st.Current.KeyID == "" || st.Pending != nil && st.Pending.KeyID == "" {
			t.Fatalf("a key without an id: current %+v, pending %+v", st.Current, st.Pending)
		}
	})
}
