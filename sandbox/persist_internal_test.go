package sandbox

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// TestAcknowledgedChangesAreOnDisk: with DataDir, every change a call made
// is in state.json before the call is answered, so a sandbox killed with -9
// right after the answer (here: the background writer stopped, so only the
// answering path can have written) restarts with it. A lost response is a
// committed change too.
func TestAcknowledgedChangesAreOnDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{DataDir: dir, Faults: Faults{Rules: []FaultRule{{Operation: "CreateAccessKey", Kind: FaultLostResponse, Count: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.store.once.Do(func() { close(s.store.stop) }) // no background writes from here on
	<-s.store.done
	hs := httptest.NewServer(s)
	defer hs.Close()
	client := iam.NewFromConfig(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}, func(o *iam.Options) { o.RetryMaxAttempts = 1 })
	ctx := context.Background()
	if _, err := client.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("durable")}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("durable")}); err == nil {
		t.Fatal("the lost response was answered")
	}
	made, err := client.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("durable")})
	if err != nil {
		t.Fatal(err)
	}

	restarted, err := New(Options{DataDir: dir}) // the first one never closed: as after kill -9
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close(ctx)
	var ids []string
	for _, k := range restarted.IssuedKeys() {
		ids = append(ids, k.AccessKeyID)
	}
	if len(ids) != 2 || ids[1] != aws.ToString(made.AccessKey.AccessKeyId) {
		t.Fatalf("keys after the restart = %v, want the lost response's key and %s", ids, aws.ToString(made.AccessKey.AccessKeyId))
	}
}
