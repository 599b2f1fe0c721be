package sandbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// The SQS cases: what keyrot's scheduler and worker do with a queue.

func sqsCases() []conformanceCase {
	return []conformanceCase{
		{name: "sqs/a message's round trip", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			c := b.sqs
			q := must[*sqs.CreateQueueOutput](t, b, "create queue")(c.CreateQueue(ctx, &sqs.CreateQueueInput{
				QueueName: aws.String(b.n("work")), Attributes: map[string]string{"VisibilityTimeout": "60"},
			}))
			got, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(b.n("work"))})
			f.outcome("get queue url", err)
			f.set("same url", err == nil && aws.ToString(got.QueueUrl) == aws.ToString(q.QueueUrl))
			_, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(b.n("work")), Attributes: map[string]string{"VisibilityTimeout": "5"}})
			f.outcome("create again with another attribute", err)
			_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(b.n("absent"))})
			f.outcome("get url of a missing queue", err)

			batch, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: []sqstypes.SendMessageBatchRequestEntry{
				{Id: aws.String("a"), MessageBody: aws.String(`{"account":"1"}`)},
				{Id: aws.String("b"), MessageBody: aws.String(`{"account":"2"}`)},
			}})
			f.outcome("send batch", err)
			if err == nil {
				f.set("batch", fmt.Sprintf("%d ok, %d failed", len(batch.Successful), len(batch.Failed)))
			}
			_, err = c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: []sqstypes.SendMessageBatchRequestEntry{
				{Id: aws.String("a"), MessageBody: aws.String("1")}, {Id: aws.String("a"), MessageBody: aws.String("2")},
			}})
			f.outcome("send a batch with repeated ids", err)

			recv, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10,
				MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount}})
			f.outcome("receive", err)
			if err != nil {
				return
			}
			f.set("received", len(recv.Messages))
			for i, m := range recv.Messages {
				f.set(fmt.Sprintf("message %d", i), aws.ToString(m.Body)+" received "+m.Attributes["ApproximateReceiveCount"])
			}
			again := must[*sqs.ReceiveMessageOutput](t, b, "receive again")(c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl}))
			f.set("in flight, received again", len(again.Messages))
			for _, m := range recv.Messages {
				_, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle})
				f.outcome("delete", err)
			}
			attrs := must[*sqs.GetQueueAttributesOutput](t, b, "attributes")(c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
				AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}}))
			f.set("left", attrs.Attributes)
		}},
	}
}
