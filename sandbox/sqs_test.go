package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

func TestSQSRoundTrip(t *testing.T) {
	e := newOrgEnv(t, 2)
	ctx := context.Background()
	client := sqs.NewFromConfig(sandboxtest.Config(t, e.s))

	dlq := ok1[*sqs.CreateQueueOutput](t)(client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("keyrot-dlq")}))
	dlqArn := ok1[*sqs.GetQueueAttributesOutput](t)(client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})).Attributes["QueueArn"]
	if want := "arn:aws:sqs:us-east-1:" + mgmtID + ":keyrot-dlq"; dlqArn != want {
		t.Fatalf("QueueArn = %q, want %q", dlqArn, want)
	}
	created := ok1[*sqs.CreateQueueOutput](t)(client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String("keyrot-work"),
		Attributes: map[string]string{
			"VisibilityTimeout": "60",
			"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"2"}`, dlqArn),
		},
	}))
	url := aws.ToString(created.QueueUrl)
	if want := e.s.URL() + "/" + mgmtID + "/keyrot-work"; url != want {
		t.Errorf("queue URL = %q, want %q", url, want)
	}
	got := ok1[*sqs.GetQueueUrlOutput](t)(client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("keyrot-work")}))
	if aws.ToString(got.QueueUrl) != url {
		t.Errorf("GetQueueUrl = %q", aws.ToString(got.QueueUrl))
	}
	// The same name with other attributes is refused; with the same, it is the same queue.
	_, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("keyrot-work"), Attributes: map[string]string{"VisibilityTimeout": "5"}})
	expectCode(t, err, "QueueAlreadyExists")
	_, err = client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nothere")})
	var missing *sqstypes.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Errorf("GetQueueUrl of a missing queue: %v", err)
	}

	// One message per account, as keyrot's scheduler sends them; the SDK
	// checks the bodies' MD5s.
	var entries []sqstypes.SendMessageBatchRequestEntry
	for _, a := range e.s.Accounts()[1:] {
		entries = append(entries, sqstypes.SendMessageBatchRequestEntry{
			Id: aws.String("a" + a.ID), MessageBody: aws.String(`{"account":"` + a.ID + `"}`),
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String("account")}},
		})
	}
	entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String("bad"), MessageBody: aws.String("\x01")})
	batch := ok1[*sqs.SendMessageBatchOutput](t)(client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: created.QueueUrl, Entries: entries}))
	if len(batch.Successful) != 2 || len(batch.Failed) != 1 || aws.ToString(batch.Failed[0].Id) != "bad" || aws.ToString(batch.Failed[0].Code) != "InvalidMessageContents" {
		t.Fatalf("batch = %+v", batch)
	}
	ok1[*sqs.SendMessageOutput](t)(client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String("later"), DelaySeconds: 10}))

	// A test reads the queue at GET /_sandbox/sqs.
	var listed []sandbox.SQSQueue
	sandboxtest.GetJSON(t, e.s.URL()+"/_sandbox/sqs", &listed)
	if len(listed) != 2 || listed[1].Name != "keyrot-work" || len(listed[1].Messages) != 3 || listed[1].Messages[0].Body != `{"account":"`+member1ID+`"}` ||
		listed[1].Messages[0].Attributes["kind"].StringValue != "account" || listed[1].Messages[2].Visible {
		t.Fatalf("GET /_sandbox/sqs = %+v", listed)
	}

	receive := func(n int32) []sqstypes.Message {
		t.Helper()
		out := ok1[*sqs.ReceiveMessageOutput](t)(client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: created.QueueUrl, MaxNumberOfMessages: n,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
			MessageAttributeNames:       []string{"All"},
		}))
		return out.Messages
	}
	msgs := receive(10)
	if len(msgs) != 2 || msgs[0].Attributes["ApproximateReceiveCount"] != "1" || aws.ToString(msgs[0].MessageAttributes["kind"].StringValue) != "account" {
		t.Fatalf("first receive = %+v", msgs)
	}
	if again := receive(10); len(again) != 0 {
		t.Errorf("in-flight messages received again: %+v", again)
	}
	// Deleting the first; the second comes back after its visibility timeout.
	ok1[*sqs.DeleteMessageOutput](t)(client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: created.QueueUrl, ReceiptHandle: msgs[0].ReceiptHandle}))
	_, err = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: created.QueueUrl, ReceiptHandle: aws.String("garbage")})
	expectCode(t, err, "ReceiptHandleIsInvalid")
	e.clock.Advance(60 * time.Second)
	msgs = receive(10)
	if len(msgs) != 2 || msgs[0].Attributes["ApproximateReceiveCount"] != "2" || aws.ToString(msgs[1].Body) != "later" {
		t.Fatalf("after the visibility timeout = %+v", msgs)
	}
	// ChangeMessageVisibility to 0 makes one visible again at once.
	ok1[*sqs.ChangeMessageVisibilityOutput](t)(client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: created.QueueUrl, ReceiptHandle: msgs[1].ReceiptHandle, VisibilityTimeout: 0,
	}))
	_, err = client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: created.QueueUrl, ReceiptHandle: msgs[1].ReceiptHandle, VisibilityTimeout: 5})
	expectCode(t, err, "AWS.SimpleQueueService.MessageNotInflight")
	later := receive(1)
	if len(later) != 1 || aws.ToString(later[0].Body) != "later" {
		t.Fatalf("after ChangeMessageVisibility 0: %+v", later)
	}
	del := ok1[*sqs.DeleteMessageBatchOutput](t)(client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: created.QueueUrl,
		Entries: []sqstypes.DeleteMessageBatchRequestEntry{{Id: aws.String("x"), ReceiptHandle: later[0].ReceiptHandle}, {Id: aws.String("y"), ReceiptHandle: aws.String("bad")}}}))
	if len(del.Successful) != 1 || len(del.Failed) != 1 {
		t.Errorf("delete batch = %+v", del)
	}
	// The message received twice (maxReceiveCount) moves to the DLQ.
	e.clock.Advance(60 * time.Second)
	if left := receive(10); len(left) != 0 {
		t.Errorf("a message past maxReceiveCount was received: %+v", left)
	}
	dead := ok1[*sqs.ReceiveMessageOutput](t)(client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl}))
	if len(dead.Messages) != 1 || aws.ToString(dead.Messages[0].Body) != `{"account":"`+member2ID+`"}` {
		t.Errorf("dead-letter queue = %+v", dead.Messages)
	}

	// Queues are per account: a member does not see the management account's.
	member := sqs.NewFromConfig(sandboxtest.MemberConfig(t, e.s, member1ID, ""))
	_, err = member.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("keyrot-work")})
	expectCode(t, err, "AWS.SimpleQueueService.NonExistentQueue")
	_, err = member.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String("x")})
	expectCode(t, err, "AccessDenied")

	// Batches: at most 10 entries, distinct ids.
	_, err = client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: created.QueueUrl, Entries: []sqstypes.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("1")}, {Id: aws.String("a"), MessageBody: aws.String("2")}}})
	expectCode(t, err, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
	_, err = client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("q.fifo"), Attributes: map[string]string{"FifoQueue": "true"}})
	if err == nil || !strings.Contains(err.Error(), "standard queues only") {
		t.Errorf("FIFO queue: %v", err)
	}
}

// TestSQSLongPoll: a receive waiting on an empty queue returns the message
// sent meanwhile.
func TestSQSLongPoll(t *testing.T) {
	e := newOrgEnv(t, 0)
	ctx := context.Background()
	client := sqs.NewFromConfig(sandboxtest.Config(t, e.s))
	q := ok1[*sqs.CreateQueueOutput](t)(client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("poll")}))

	got := make(chan []sqstypes.Message, 1)
	go func() {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 20})
		if err != nil {
			t.Errorf("long poll: %v", err)
		}
		got <- out.Messages
	}()
	// Send once the receive has reached the sandbox (counted), so that it
	// is waiting or about to; either way it must return the message.
	for e.s.Calls()["sqs:ReceiveMessage"] == 0 {
		runtime.Gosched()
	}
	ok1[*sqs.SendMessageOutput](t)(client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("ping")}))
	msgs := <-got
	if len(msgs) != 1 || aws.ToString(msgs[0].Body) != "ping" {
		t.Errorf("long poll got %+v", msgs)
	}
}
