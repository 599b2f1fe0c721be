package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
	"github.com/keyrot/keyrot/secretsmanager"
)

// orgSandbox is a sandbox Organization of n members, each with user
// ci-bot, and the members' ids.
func orgSandbox(t *testing.T, n int) (*sandbox.Server, []string) {
	t.Helper()
	sb := sandboxtest.Start(t, sandbox.Options{MemberAccounts: n})
	var members []string
	for _, a := range sb.Accounts() {
		if a.Management {
			continue
		}
		members = append(members, a.ID)
		if _, err := awsiam.NewFromConfig(sandboxtest.MemberConfig(t, sb, a.ID, "")).CreateUser(t.Context(), &awsiam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
			t.Fatal(err)
		}
	}
	return sb, members
}

// sqsEvent is an SQS event of one message per account (bodies as given).
func sqsEvent(bodies ...string) string {
	var ev events.SQSEvent
	for i, b := range bodies {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: fmt.Sprintf("msg-%d", i+1), Body: b, EventSource: "aws:sqs",
			EventSourceARN: "arn:aws:sqs:us-east-1:123456789012:keyrot-accounts", AWSRegion: "us-east-1"})
	}
	out, _ := json.Marshal(ev)
	return string(out)
}

// rotatedIn reports whether ci-bot has one key and its secret in an account.
func rotatedIn(t *testing.T, sb *sandbox.Server, account string) bool {
	t.Helper()
	cfg := sandboxtest.MemberConfig(t, sb, account, "")
	keys, err := awsiam.NewFromConfig(cfg).ListAccessKeys(t.Context(), &awsiam.ListAccessKeysInput{UserName: aws.String("ci-bot")})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := awssm.NewFromConfig(cfg).ListSecrets(t.Context(), &awssm.ListSecretsInput{})
	if err != nil {
		t.Fatal(err)
	}
	return len(keys.AccessKeyMetadata) == 1 && len(secrets.SecretList) > 0
}

// accountsEnv is the worker's configuration as deploy/organization.yaml sets it.
func accountsEnv(extra map[string]string) func(string) (string, bool) {
	m := map[string]string{"KEYROT_ACCOUNTS_ORGANIZATION": "true", "KEYROT_NOTIFY_VIA": "log"}
	for k, v := range extra {
		m[k] = v
	}
	return env(m)
}

func TestWorkerReportsFailedAccountsAsBatchItemFailures(t *testing.T) {
	sb, members := orgSandbox(t, 3)
	if err := sb.DeleteMemberRole(members[1]); err != nil {
		t.Fatal(err)
	}
	admin := sandboxtest.Config(t, sb)
	out := &testkit.Buffer{}
	h, ok, err := newAccountsHandler(t.Context(), options{LookupEnv: accountsEnv(nil), Stdout: out, AWS: &admin})
	if err != nil || !ok {
		t.Fatalf("newAccountsHandler: ok=%v, %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got, err := h.invoke(ctx, json.RawMessage(sqsEvent(
		`{"account":"`+members[0]+`"}`, `{"account":"`+members[1]+`"}`, `{"account":"`+members[2]+`"}`, `not json`, `{"account":"12345"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp := got.(events.SQSEventResponse)
	var failed []string
	for _, f := range resp.BatchItemFailures {
		failed = append(failed, f.ItemIdentifier)
	}
	if want := []string{"msg-2", "msg-4", "msg-5"}; !slices.Equal(failed, want) {
		t.Fatalf("batch item failures = %v, want %v (the account without its role, the bad messages)\n%s", failed, want, out)
	}
	for _, id := range []string{members[0], members[2]} {
		if !rotatedIn(t, sb, id) {
			t.Errorf("account %s not rotated", id)
		}
	}
	if !strings.Contains(out.String(), `"account":"`+members[1]+`","message_id":"msg-2"`) {
		t.Errorf("the log does not name the failed account:\n%s", out)
	}
}

func TestWorkerOnlyTakesConfiguredAccounts(t *testing.T) {
	sb, members := orgSandbox(t, 2)
	admin := sandboxtest.Config(t, sb)
	h, _, err := newAccountsHandler(t.Context(), options{LookupEnv: env(map[string]string{"KEYROT_ACCOUNTS_IDS": members[0], "KEYROT_NOTIFY_VIA": "log"}),
		Stdout: &testkit.Buffer{}, AWS: &admin})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.work(t.Context(), mustSQSEvent(t, `{"account":"`+members[1]+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || rotatedIn(t, sb, members[1]) {
		t.Fatalf("a message naming an account outside accounts.ids was worked: %+v", resp)
	}
}

func mustSQSEvent(t *testing.T, bodies ...string) events.SQSEvent {
	t.Helper()
	var ev events.SQSEvent
	if err := json.Unmarshal([]byte(sqsEvent(bodies...)), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// fakeSQS records the messages sent, failing each entry named in failOnce
// the first time.
type fakeSQS struct {
	mu       sync.Mutex
	calls    int
	bodies   []string
	groups   []string // MessageGroupId of each message sent (FIFO)
	failOnce map[string]bool
}

func (f *fakeSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(in.Entries) > sqsBatch {
		return nil, fmt.Errorf("AWS.SimpleQueueService.TooManyEntriesInBatchRequest: %d entries", len(in.Entries))
	}
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		body := aws.ToString(e.MessageBody)
		if f.failOnce[body] {
			delete(f.failOnce, body)
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), SenderFault: false})
			continue
		}
		f.bodies = append(f.bodies, body)
		if e.MessageGroupId != nil {
			if aws.ToString(e.MessageDeduplicationId) == "" {
				return nil, fmt.Errorf("MissingParameter: a FIFO message needs a deduplication id")
			}
			f.groups = append(f.groups, aws.ToString(e.MessageGroupId))
		}
		out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("m" + aws.ToString(e.Id))})
	}
	return out, nil
}

func TestSchedulerSendsOneMessagePerAccount(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{MemberAccounts: 12})
	admin := sandboxtest.Config(t, sb)
	h, _, err := newAccountsHandler(t.Context(), options{LookupEnv: accountsEnv(nil), Stdout: &testkit.Buffer{}, AWS: &admin})
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, a := range sb.Accounts() {
		if !a.Management {
			members = append(members, a.ID)
		}
	}
	fake := &fakeSQS{failOnce: map[string]bool{}}
	h.sqs, h.queueURL = fake, "https://sqs.us-east-1.amazonaws.com/123456789012/keyrot-accounts"
	got, err := h.invoke(t.Context(), json.RawMessage(`{"source":"aws.events","detail-type":"Scheduled Event"}`))
	if err != nil {
		t.Fatal(err)
	}
	res := got.(scheduleResult)
	if res.Accounts != 12 || res.Queued != 12 || fake.calls != 2 {
		t.Fatalf("result %+v after %d calls, want 12 accounts queued in 2 batches", res, fake.calls)
	}
	var sent []string
	for _, b := range fake.bodies {
		var m accountMessage
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m.Account)
	}
	slices.Sort(sent)
	if !slices.Equal(sent, members) {
		t.Errorf("sent %v, want every member once: %v (not the management account)", sent, members)
	}

	// An entry SQS fails is sent again.
	fake.bodies, fake.calls = nil, 0
	fake.failOnce[`{"account":"`+members[0]+`","name":"`+sb.Accounts()[1].Name+`"}`] = true
	if _, err := h.schedule(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(fake.bodies) != 12 || fake.calls != 3 {
		t.Errorf("after one failed entry: %d sent in %d calls, want 12 in 3", len(fake.bodies), fake.calls)
	}

	// A FIFO queue gets a group per account and a message per schedule.
	fake.bodies, fake.groups = nil, nil
	h.queueURL += ".fifo"
	if _, err := h.schedule(t.Context()); err != nil {
		t.Fatal(err)
	}
	slices.Sort(fake.groups)
	if !slices.Equal(fake.groups, members) {
		t.Errorf("message groups %v, want one per account %v", fake.groups, members)
	}
}

// TestSchedulerAndWorkerUnderRIE runs bootstrap twice under the Lambda
// Runtime Interface Emulator, as the management stack does, against the
// sandbox's Organization and SQS: the scheduler, invoked with the
// schedule's event, queues one message per member account; the worker,
// invoked over HTTP with those messages as Lambda's SQS event, rotates
// each account and answers a partial batch failure naming the message of
// the account whose role is missing.
func TestSchedulerAndWorkerUnderRIE(t *testing.T) {
	rie := testkit.RequireRIE(t)
	bootstrap := testkit.BuildBootstrap(t, ".")
	sb, members := orgSandbox(t, 3)
	if err := sb.DeleteMemberRole(members[2]); err != nil {
		t.Fatal(err)
	}
	admin := sandboxtest.Config(t, sb)
	queue, err := sqs.NewFromConfig(admin).CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String("keyrot-accounts")})
	if err != nil {
		t.Fatal(err)
	}
	config := []string{
		"KEYROT_USERS=ci-bot",
		"KEYROT_ACCOUNTS_ORGANIZATION=true",
		"KEYROT_ACCOUNTS_CONCURRENCY=2",
		"KEYROT_NOTIFY_VIA=log",
		"KEYROT_LOG_FORMAT=json",
	}
	scheduler := testkit.StartRIE(t, rie, bootstrap, append(append(rieAWSEnv(sb, "keyrot-scheduler"), config...), "KEYROT_QUEUE_URL="+aws.ToString(queue.QueueUrl)))
	var sched scheduleResult
	if body := scheduler.Invoke(t, `{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`); json.Unmarshal(body, &sched) != nil || sched.Queued != 3 {
		t.Fatalf("scheduler response %s, want 3 accounts queued\n%s", body, scheduler.Output())
	}

	// What Lambda's event source mapping does: receive, invoke, delete the successes.
	client := sqs.NewFromConfig(admin)
	got, err := client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: queue.QueueUrl, MaxNumberOfMessages: 10})
	if err != nil || len(got.Messages) != 3 {
		t.Fatalf("received %v, %v; want the 3 accounts' messages", got, err)
	}
	var event events.SQSEvent
	var failingMessage string
	for _, m := range got.Messages {
		event.Records = append(event.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), EventSource: "aws:sqs", AWSRegion: "us-east-1"})
		if strings.Contains(aws.ToString(m.Body), members[2]) {
			failingMessage = aws.ToString(m.MessageId)
		}
	}
	payload, _ := json.Marshal(event)
	worker := testkit.StartRIE(t, rie, bootstrap, append(rieAWSEnv(sb, "keyrot-worker"), config...))
	body := worker.Invoke(t, string(payload))
	var resp events.SQSEventResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("response %s: %v", body, err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != failingMessage {
		t.Fatalf("response %s, want a partial batch failure of %s (account %s) alone\n%s", body, failingMessage, members[2], worker.Output())
	}
	for _, acct := range members[:2] {
		if !rotatedIn(t, sb, acct) {
			t.Errorf("account %s not rotated\n%s", acct, worker.Output())
		}
	}
	worker.Stop()
	for _, want := range []string{`"msg":"account failed"`, `"account":"` + members[2] + `"`, `"AccountFailures":1`, "REPORT RequestId"} {
		if !strings.Contains(worker.Output(), want) {
			t.Errorf("worker output lacks %s:\n%s", want, worker.Output())
		}
	}
	// Never a secret access key in either function's output.
	for _, acct := range members[:2] {
		store := secretsmanager.New(awssm.NewFromConfig(sandboxtest.MemberConfig(t, sb, acct, "")), secretsmanager.Config{Prefix: "iam-key-rotation/"})
		creds, err := store.Current(t.Context(), "ci-bot")
		if err != nil || creds.SecretAccessKey == "" {
			t.Fatalf("account %s: current key: %v", acct, err)
		}
		if strings.Contains(worker.Output()+scheduler.Output(), creds.SecretAccessKey) {
			t.Fatalf("account %s's secret access key appears in the functions' output", acct)
		}
	}
}
