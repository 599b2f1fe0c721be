package sandbox

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // SQS's own checksums are MD5; they are not for security
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// SQS (JSON 1.0, target AmazonSQS.*, as the SDK v2 client sends it):
// standard queues in the caller's account with visibility timeouts, delays,
// long polling, batches and a redrive policy that moves a message received
// too often to its dead-letter queue. Enough for keyrot's scheduler to
// enqueue work per account and for tests to read it back.

// SQS limits, as AWS documents them.
const (
	sqsMaxBody        = 1 << 20 // bytes of a message (body and attributes)
	sqsMaxBatch       = 10
	sqsMaxWait        = 20 * time.Second
	sqsMaxVisibility  = 12 * time.Hour
	sqsMaxDelay       = 15 * time.Minute
	sqsDefaultVisible = 30 // seconds
	sqsDefaultKeep    = 4 * 24 * 3600
)

// sqsQueryCodes are the codes AWS's query-compatible error header carries,
// which the SDK reports as the error code.
var sqsQueryCodes = map[string]string{
	"QueueDoesNotExist":            "AWS.SimpleQueueService.NonExistentQueue",
	"QueueNameExists":              "QueueAlreadyExists",
	"MessageNotInflight":           "AWS.SimpleQueueService.MessageNotInflight",
	"EmptyBatchRequest":            "AWS.SimpleQueueService.EmptyBatchRequest",
	"TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
	"BatchEntryIdsNotDistinct":     "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
	"InvalidBatchEntryId":          "AWS.SimpleQueueService.InvalidBatchEntryId",
	"UnsupportedOperation":         "AWS.SimpleQueueService.UnsupportedOperation",
}

// SQSQueue is a queue and its messages, as GET /_sandbox/sqs lists them.
type SQSQueue struct {
	Account    string            `json:"account"`
	Name       string            `json:"name"`
	URL        string            `json:"url"`
	ARN        string            `json:"arn"`
	Attributes map[string]string `json:"attributes"`
	Messages   []SQSMessage      `json:"messages"`
}

// SQSMessage is a message waiting in a queue (received or not).
type SQSMessage struct {
	ID           string                  `json:"id"`
	Body         string                  `json:"body"`
	Attributes   map[string]SQSAttribute `json:"attributes,omitempty"`
	Sent         time.Time               `json:"sent"`
	ReceiveCount int                     `json:"receive_count"`
	Visible      bool                    `json:"visible"` // neither delayed nor in flight
}

// SQSAttribute is a message attribute's value (String, Number or Binary).
type SQSAttribute struct {
	DataType    string `json:"DataType"`
	StringValue string `json:"StringValue,omitempty"`
	BinaryValue []byte `json:"BinaryValue,omitempty"`
}

type sqsQueue struct {
	Account    string            `json:"account"`
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes"`
	Created    time.Time         `json:"created"`
	Messages   []*sqsMessage     `json:"messages"`
}

type sqsMessage struct {
	ID           string                  `json:"id"`
	Body         string                  `json:"body"`
	Attributes   map[string]SQSAttribute `json:"attributes,omitempty"`
	Sender       string                  `json:"sender"`
	Sent         time.Time               `json:"sent"`
	VisibleAt    time.Time               `json:"visible_at"`
	ReceiveCount int                     `json:"receive_count"`
	FirstReceive time.Time               `json:"first_receive,omitzero"`
	Receipt      string                  `json:"receipt,omitempty"` // handle of the latest receive
}

// sqsService holds every account's queues. Safe for concurrent use.
type sqsService struct {
	clock   Clock
	region  string
	changed func()

	mu      sync.Mutex
	rng     *rand.Rand
	queues  map[string]*sqsQueue // by account + "/" + name
	arrived chan struct{}        // closed, and replaced, when a message may be ready
}

func newSQS(clock Clock, region string, seed int64, changed func()) *sqsService {
	return &sqsService{clock: clock, region: region, changed: changed,
		rng: rand.New(rand.NewPCG(uint64(seed), 0x5a5)), queues: map[string]*sqsQueue{}, arrived: make(chan struct{})}
}

func sqsError(code, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, code, format, args...)
}

func sqsNoQueue() *apiError {
	return sqsError("QueueDoesNotExist", "The specified queue does not exist.")
}

// writeSQSError renders an SQS error as the query-compatible JSON protocol
// does: __type names the shape, X-Amzn-Query-Error the query code.
func writeSQSError(w http.ResponseWriter, c *call, e *apiError) {
	h := w.Header()
	if q, ok := sqsQueryCodes[e.Code]; ok {
		fault := "Sender"
		if e.Status >= 500 {
			fault = "Receiver"
		}
		h.Set("X-Amzn-Query-Error", q+";"+fault)
	}
	writeJSON(w, c, "application/x-amz-json-1.0", e.Status, map[string]string{"__type": "com.amazonaws.sqs#" + e.Code, "message": e.Message})
}

func (q *sqsQueue) arn(region string) string {
	return "arn:aws:sqs:" + region + ":" + q.Account + ":" + q.Name
}

// seconds reads a queue attribute holding seconds.
func (q *sqsQueue) seconds(name string, def int) time.Duration {
	if n, err := strconv.Atoi(q.Attributes[name]); err == nil {
		return time.Duration(n) * time.Second
	}
	return time.Duration(def) * time.Second
}

// redrive is a queue's RedrivePolicy.
type redrive struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     any    `json:"maxReceiveCount"` // AWS accepts a number or a string
}

func (r redrive) max() int {
	switch v := r.MaxReceiveCount.(type) {
	case float64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

// queueAttributes are the attributes CreateQueue accepts, with their ranges.
var queueAttributes = map[string][2]int{
	"VisibilityTimeout":             {0, 43200},
	"DelaySeconds":                  {0, 900},
	"ReceiveMessageWaitTimeSeconds": {0, 20},
	"MessageRetentionPeriod":        {60, 1209600},
	"MaximumMessageSize":            {1024, sqsMaxBody},
	"RedrivePolicy":                 {},
	"Policy":                        {},
	"SqsManagedSseEnabled":          {},
	"KmsMasterKeyId":                {},
	"KmsDataKeyReusePeriodSeconds":  {60, 86400},
}

func (s *sqsService) checkAttributes(attrs map[string]string) *apiError {
	for name, v := range attrs {
		bounds, ok := queueAttributes[name]
		switch {
		case name == "FifoQueue" || name == "ContentBasedDeduplication":
			return sqsError("InvalidAttributeName", "The keyrot sandbox serves standard queues only: attribute %s is not supported.", name)
		case !ok:
			return sqsError("InvalidAttributeName", "Unknown Attribute %s.", name)
		case name == "RedrivePolicy":
			var r redrive
			if err := json.Unmarshal([]byte(v), &r); err != nil || r.DeadLetterTargetArn == "" || r.max() < 1 || r.max() > 1000 {
				return sqsError("InvalidAttributeValue", "Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a valid JSON map with deadLetterTargetArn and maxReceiveCount (1 to 1000).", v)
			}
		case bounds != [2]int{}:
			n, err := strconv.Atoi(v)
			if err != nil || n < bounds[0] || n > bounds[1] {
				return sqsError("InvalidAttributeValue", "Invalid value for the parameter %s.", name)
			}
		}
	}
	return nil
}

// queueName checks a standard queue's name: 1..80 of [A-Za-z0-9_-].
func queueName(name string) *apiError {
	ok := len(name) >= 1 && len(name) <= 80
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			ok = false
		}
	}
	if !ok {
		return sqsError("InvalidParameterValue", "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	return nil
}

func queueURL(base, account, name string) string { return base + "/" + account + "/" + name }

// sqsCall carries one request.
type sqsCall struct {
	ctx    context.Context
	caller principal
	base   string // scheme and host the client reached, for queue URLs
	now    time.Time
	dirty  bool
}

// handle runs one SQS operation.
func (s *sqsService) handle(ctx context.Context, caller principal, op string, body []byte, base string) (any, *apiError) {
	c := &sqsCall{ctx: ctx, caller: caller, base: base, now: s.clock.Now()}
	if !caller.Admin {
		return nil, errorf(http.StatusForbidden, "AccessDenied",
			"User: %s is not authorized to perform: sqs:%s because no identity-based policy allows the sqs:%s action", caller.ARN, op, op)
	}
	var fn func(*sqsCall, []byte) (any, *apiError)
	switch op {
	case "CreateQueue":
		fn = s.createQueue
	case "GetQueueUrl":
		fn = s.getQueueURL
	case "GetQueueAttributes":
		fn = s.getQueueAttributes
	case "SendMessage":
		fn = s.sendMessage
	case "SendMessageBatch":
		fn = s.sendMessageBatch
	case "ReceiveMessage":
		fn = s.receiveMessage
	case "DeleteMessage":
		fn = s.deleteMessage
	case "DeleteMessageBatch":
		fn = s.deleteMessageBatch
	case "ChangeMessageVisibility":
		fn = s.changeMessageVisibility
	default:
		return nil, sqsError("UnsupportedOperation", "The operation %q is not supported by the keyrot sandbox's SQS.", op)
	}
	resp, err := fn(c, body)
	if c.dirty {
		s.changed()
	}
	return resp, err
}

func sqsDecode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return sqsError("InvalidParameterValue", "Could not parse the request body: %v", err)
	}
	return nil
}

// queue finds the queue a QueueUrl names, in the caller's account. s.mu held.
func (s *sqsService) queue(c *sqsCall, url string) (*sqsQueue, *apiError) {
	if url == "" {
		return nil, sqsError("MissingParameter", "The request must contain the parameter QueueUrl.")
	}
	parts := strings.Split(strings.TrimSuffix(url, "/"), "/")
	if len(parts) < 2 {
		return nil, sqsNoQueue()
	}
	account, name := parts[len(parts)-2], parts[len(parts)-1]
	q, ok := s.queues[account+"/"+name]
	if !ok {
		return nil, sqsNoQueue()
	}
	if account != c.caller.Account {
		return nil, errorf(http.StatusForbidden, "AccessDenied", "Access to the resource %s is denied.", url)
	}
	return q, nil
}

func (s *sqsService) createQueue(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueName  string
		Attributes map[string]string
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	if err := s.checkAttributes(in.Attributes); err != nil {
		return nil, err
	}
	if err := queueName(in.QueueName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := c.caller.Account + "/" + in.QueueName
	if q, ok := s.queues[key]; ok {
		for k, v := range in.Attributes {
			if q.Attributes[k] != v {
				return nil, sqsError("QueueNameExists", "A queue already exists with the same name and a different value for attribute %s", k)
			}
		}
	} else {
		attrs := map[string]string{}
		for k, v := range in.Attributes {
			attrs[k] = v
		}
		s.queues[key] = &sqsQueue{Account: c.caller.Account, Name: in.QueueName, Attributes: attrs, Created: c.now.UTC()}
		c.dirty = true
	}
	return map[string]string{"QueueUrl": queueURL(c.base, c.caller.Account, in.QueueName)}, nil
}

func (s *sqsService) getQueueURL(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueName              string
		QueueOwnerAWSAccountID string `json:"QueueOwnerAWSAccountId"`
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	owner := c.caller.Account
	if in.QueueOwnerAWSAccountID != "" {
		owner = in.QueueOwnerAWSAccountID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.queues[owner+"/"+in.QueueName]; !ok || owner != c.caller.Account {
		return nil, sqsNoQueue()
	}
	return map[string]string{"QueueUrl": queueURL(c.base, owner, in.QueueName)}, nil
}

func (s *sqsService) getQueueAttributes(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueURL       string `json:"QueueUrl"`
		AttributeNames []string
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queue(c, in.QueueURL)
	if err != nil {
		return nil, err
	}
	s.expire(q, c.now)
	all := map[string]string{
		"QueueArn":                              q.arn(s.region),
		"CreatedTimestamp":                      strconv.FormatInt(q.Created.Unix(), 10),
		"VisibilityTimeout":                     strconv.Itoa(int(q.seconds("VisibilityTimeout", sqsDefaultVisible).Seconds())),
		"DelaySeconds":                          strconv.Itoa(int(q.seconds("DelaySeconds", 0).Seconds())),
		"ReceiveMessageWaitTimeSeconds":         strconv.Itoa(int(q.seconds("ReceiveMessageWaitTimeSeconds", 0).Seconds())),
		"MessageRetentionPeriod":                strconv.Itoa(int(q.seconds("MessageRetentionPeriod", sqsDefaultKeep).Seconds())),
		"ApproximateNumberOfMessages":           "0",
		"ApproximateNumberOfMessagesNotVisible": "0",
		"ApproximateNumberOfMessagesDelayed":    "0",
	}
	if v, ok := q.Attributes["RedrivePolicy"]; ok {
		all["RedrivePolicy"] = v
	}
	var visible, inFlight, delayed int
	for _, m := range q.Messages {
		switch {
		case !c.now.Before(m.VisibleAt):
			visible++
		case m.ReceiveCount > 0:
			inFlight++
		default:
			delayed++
		}
	}
	all["ApproximateNumberOfMessages"] = strconv.Itoa(visible)
	all["ApproximateNumberOfMessagesNotVisible"] = strconv.Itoa(inFlight)
	all["ApproximateNumberOfMessagesDelayed"] = strconv.Itoa(delayed)
	out := map[string]string{}
	for _, n := range in.AttributeNames {
		if n == "All" {
			out = all
			break
		}
		if v, ok := all[n]; ok {
			out[n] = v
		}
	}
	return map[string]any{"Attributes": out}, nil
}

// expire drops messages older than the queue's retention period. s.mu held.
func (s *sqsService) expire(q *sqsQueue, now time.Time) {
	keep := q.seconds("MessageRetentionPeriod", sqsDefaultKeep)
	q.Messages = slices.DeleteFunc(q.Messages, func(m *sqsMessage) bool { return now.Sub(m.Sent) > keep })
}

// sqsEntry is a message to send, alone or in a batch.
type sqsEntry struct {
	ID                string `json:"Id"`
	MessageBody       *string
	DelaySeconds      *int
	MessageAttributes map[string]SQSAttribute
}

// validBody reports whether s holds only the characters SQS accepts.
func validBody(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// checkEntry validates a message before it is sent.
func checkEntry(e sqsEntry) *apiError {
	if e.MessageBody == nil || *e.MessageBody == "" {
		return sqsError("MissingParameter", "The request must contain the parameter MessageBody.")
	}
	size := len(*e.MessageBody)
	for name, a := range e.MessageAttributes {
		size += len(name) + len(a.DataType) + len(a.StringValue) + len(a.BinaryValue)
		base, _, _ := strings.Cut(a.DataType, ".")
		if base != "String" && base != "Number" && base != "Binary" {
			return sqsError("InvalidParameterValue", "The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", name)
		}
	}
	if size > sqsMaxBody {
		return sqsError("InvalidParameterValue", "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", sqsMaxBody)
	}
	if !validBody(*e.MessageBody) {
		return sqsError("InvalidMessageContents", "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF")
	}
	if e.DelaySeconds != nil && (*e.DelaySeconds < 0 || time.Duration(*e.DelaySeconds)*time.Second > sqsMaxDelay) {
		return sqsError("InvalidParameterValue", "Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided.", *e.DelaySeconds)
	}
	return nil
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b) //nolint:gosec // SQS's checksum
	return hex.EncodeToString(sum[:])
}

// attributesMD5 is SQS's MD5OfMessageAttributes: over the attributes sorted
// by name, each as length-prefixed name, type, a transport byte (1 string,
// 2 binary) and length-prefixed value.
func attributesMD5(attrs map[string]SQSAttribute) string {
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	field := func(b []byte) {
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(b)))
		buf.Write(b)
	}
	for _, n := range names {
		a := attrs[n]
		field([]byte(n))
		field([]byte(a.DataType))
		if strings.HasPrefix(a.DataType, "Binary") {
			buf.WriteByte(2)
			field(a.BinaryValue)
		} else {
			buf.WriteByte(1)
			field([]byte(a.StringValue))
		}
	}
	return md5Hex(buf.Bytes())
}

func (s *sqsService) newID() string {
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", s.rng.Uint32(), s.rng.Uint32()&0xffff, s.rng.Uint32()&0xfff, s.rng.Uint32()&0xfff, s.rng.Uint64()&0xffffffffffff)
}

// send enqueues e on q and returns SendMessage's answer. s.mu held.
func (s *sqsService) send(c *sqsCall, q *sqsQueue, e sqsEntry) map[string]string {
	delay := q.seconds("DelaySeconds", 0)
	if e.DelaySeconds != nil {
		delay = time.Duration(*e.DelaySeconds) * time.Second
	}
	m := &sqsMessage{ID: s.newID(), Body: *e.MessageBody, Attributes: e.MessageAttributes, Sender: sqsSender(c.caller),
		Sent: c.now.UTC(), VisibleAt: c.now.Add(delay)}
	q.Messages = append(q.Messages, m)
	c.dirty = true
	out := map[string]string{"MessageId": m.ID, "MD5OfMessageBody": md5Hex([]byte(m.Body))}
	if len(m.Attributes) > 0 {
		out["MD5OfMessageAttributes"] = attributesMD5(m.Attributes)
	}
	return out
}

// sqsSender is the SenderId SQS reports: the account for the root, the
// role id and session for a role session, else the access key id.
func sqsSender(p principal) string {
	switch {
	case p.Session != "":
		return roleID(p.Account, p.Role) + ":" + p.Session
	case p.UserName == "":
		return p.Account
	}
	return p.AccessKeyID
}

// wake tells long-polling receivers that a message may be ready. s.mu held.
func (s *sqsService) wake() {
	close(s.arrived)
	s.arrived = make(chan struct{})
}

func (s *sqsService) sendMessage(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueURL string `json:"QueueUrl"`
		sqsEntry
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkEntry(in.sqsEntry); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queue(c, in.QueueURL)
	if err != nil {
		return nil, err
	}
	out := s.send(c, q, in.sqsEntry)
	s.wake()
	return out, nil
}

// checkBatch checks a batch's entry ids: 1..10 entries, distinct, of
// [A-Za-z0-9_-]{1,80}.
func checkBatch(ids []string) *apiError {
	if len(ids) == 0 {
		return sqsError("EmptyBatchRequest", "There should be at least one SendMessageBatchRequestEntry in the request.")
	}
	if len(ids) > sqsMaxBatch {
		return sqsError("TooManyEntriesInBatchRequest", "Maximum number of entries per request are %d. You have sent %d.", sqsMaxBatch, len(ids))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if queueName(id) != nil {
			return sqsError("InvalidBatchEntryId", "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
		}
		if seen[id] {
			return sqsError("BatchEntryIdsNotDistinct", "Id %s repeated.", id)
		}
		seen[id] = true
	}
	return nil
}

type sqsBatchFailure struct {
	ID          string `json:"Id"`
	Code        string `json:"Code"`
	Message     string `json:"Message"`
	SenderFault bool   `json:"SenderFault"`
}

// runBatch checks a batch's entry ids, finds its queue and runs entry on
// each, answering with the Successful and Failed lists. entry runs with
// s.mu held.
func (s *sqsService) runBatch(c *sqsCall, url string, ids []string, entry func(q *sqsQueue, i int) (map[string]string, *apiError)) (any, *apiError) {
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queue(c, url)
	if err != nil {
		return nil, err
	}
	successful, failed := []map[string]string{}, []sqsBatchFailure{}
	for i, id := range ids {
		out, err := entry(q, i)
		if err != nil {
			failed = append(failed, sqsBatchFailure{ID: id, Code: err.Code, Message: err.Message, SenderFault: true})
			continue
		}
		out["Id"] = id
		successful = append(successful, out)
	}
	return map[string]any{"Successful": successful, "Failed": failed}, nil
}

func (s *sqsService) sendMessageBatch(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueURL string `json:"QueueUrl"`
		Entries  []sqsEntry
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(in.Entries))
	for _, e := range in.Entries {
		ids = append(ids, e.ID)
	}
	return s.runBatch(c, in.QueueURL, ids, func(q *sqsQueue, i int) (map[string]string, *apiError) {
		if err := checkEntry(in.Entries[i]); err != nil {
			return nil, err
		}
		out := s.send(c, q, in.Entries[i])
		s.wake()
		return out, nil
	})
}

// receiveRequest is ReceiveMessage's input.
type receiveRequest struct {
	QueueURL                    string `json:"QueueUrl"`
	MaxNumberOfMessages         *int
	VisibilityTimeout           *int
	WaitTimeSeconds             *int
	AttributeNames              []string
	MessageSystemAttributeNames []string
	MessageAttributeNames       []string
}

func (s *sqsService) receiveMessage(c *sqsCall, body []byte) (any, *apiError) {
	var in receiveRequest
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	limit := 1
	if in.MaxNumberOfMessages != nil {
		if *in.MaxNumberOfMessages < 1 || *in.MaxNumberOfMessages > sqsMaxBatch {
			return nil, sqsError("InvalidParameterValue", "Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", *in.MaxNumberOfMessages)
		}
		limit = *in.MaxNumberOfMessages
	}
	if in.VisibilityTimeout != nil && (*in.VisibilityTimeout < 0 || time.Duration(*in.VisibilityTimeout)*time.Second > sqsMaxVisibility) {
		return nil, sqsError("InvalidParameterValue", "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided.", *in.VisibilityTimeout)
	}
	if in.WaitTimeSeconds != nil && (*in.WaitTimeSeconds < 0 || time.Duration(*in.WaitTimeSeconds)*time.Second > sqsMaxWait) {
		return nil, sqsError("InvalidParameterValue", "Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *in.WaitTimeSeconds)
	}
	var deadline <-chan time.Time // long polling waits in real time: a driven clock does not move by itself
	for {
		s.mu.Lock()
		q, err := s.queue(c, in.QueueURL)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		msgs := s.take(c, q, in, limit)
		arrived := s.arrived
		s.mu.Unlock()
		if len(msgs) > 0 {
			return map[string]any{"Messages": msgs}, nil
		}
		if deadline == nil {
			wait := q.seconds("ReceiveMessageWaitTimeSeconds", 0)
			if in.WaitTimeSeconds != nil {
				wait = time.Duration(*in.WaitTimeSeconds) * time.Second
			}
			if wait == 0 {
				return map[string]any{"Messages": []any{}}, nil
			}
			timer := time.NewTimer(wait)
			defer timer.Stop()
			deadline = timer.C
		}
		select {
		case <-arrived:
			c.now = s.clock.Now()
		case <-deadline:
			return map[string]any{"Messages": []any{}}, nil
		case <-c.ctx.Done():
			return map[string]any{"Messages": []any{}}, nil
		}
	}
}

// take receives up to limit visible messages of q, moving those received
// too often to the dead-letter queue. s.mu held.
func (s *sqsService) take(c *sqsCall, q *sqsQueue, in receiveRequest, limit int) []map[string]any {
	s.expire(q, c.now)
	visibility := q.seconds("VisibilityTimeout", sqsDefaultVisible)
	if in.VisibilityTimeout != nil {
		visibility = time.Duration(*in.VisibilityTimeout) * time.Second
	}
	var dlq *sqsQueue
	maxReceives := 0
	if v, ok := q.Attributes["RedrivePolicy"]; ok {
		var r redrive
		if json.Unmarshal([]byte(v), &r) == nil {
			maxReceives = r.max()
			for _, other := range s.queues {
				if other != q && other.arn(s.region) == r.DeadLetterTargetArn {
					dlq = other
				}
			}
		}
	}
	var out []map[string]any
	kept := q.Messages[:0]
	for _, m := range q.Messages {
		if len(out) == limit || c.now.Before(m.VisibleAt) {
			kept = append(kept, m)
			continue
		}
		if dlq != nil && maxReceives > 0 && m.ReceiveCount >= maxReceives {
			m.VisibleAt, m.Receipt = c.now, ""
			dlq.Messages = append(dlq.Messages, m)
			c.dirty = true
			continue
		}
		m.ReceiveCount++
		if m.FirstReceive.IsZero() {
			m.FirstReceive = c.now.UTC()
		}
		m.VisibleAt = c.now.Add(visibility)
		m.Receipt = base64.RawURLEncoding.EncodeToString([]byte(q.Account + "/" + q.Name + "/" + m.ID + "/" + s.newID()))
		c.dirty = true
		out = append(out, s.render(m, in))
		kept = append(kept, m)
	}
	q.Messages = kept
	return out
}

// wanted reports whether name is asked for by names ("All", ".*", exact or
// a "prefix.*").
func wanted(names []string, name string) bool {
	for _, n := range names {
		if n == "All" || n == ".*" || n == name {
			return true
		}
		if p, ok := strings.CutSuffix(n, ".*"); ok && strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}

func (s *sqsService) render(m *sqsMessage, in receiveRequest) map[string]any {
	out := map[string]any{"MessageId": m.ID, "ReceiptHandle": m.Receipt, "Body": m.Body, "MD5OfBody": md5Hex([]byte(m.Body))}
	system := map[string]string{
		"SentTimestamp":                    strconv.FormatInt(m.Sent.UnixMilli(), 10),
		"ApproximateReceiveCount":          strconv.Itoa(m.ReceiveCount),
		"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.FirstReceive.UnixMilli(), 10),
		"SenderId":                         m.Sender,
	}
	names := append(slices.Clone(in.AttributeNames), in.MessageSystemAttributeNames...)
	attrs := map[string]string{}
	for k, v := range system {
		if wanted(names, k) {
			attrs[k] = v
		}
	}
	if len(attrs) > 0 {
		out["Attributes"] = attrs
	}
	user := map[string]SQSAttribute{}
	for k, v := range m.Attributes {
		if wanted(in.MessageAttributeNames, k) {
			user[k] = v
		}
	}
	if len(user) > 0 {
		out["MessageAttributes"] = user
		out["MD5OfMessageAttributes"] = attributesMD5(user)
	}
	return out
}

// byReceipt finds the message a receipt handle names. s.mu held.
func (s *sqsService) byReceipt(q *sqsQueue, receipt string) (int, *apiError) {
	raw, err := base64.RawURLEncoding.DecodeString(receipt)
	if receipt == "" || err != nil || !strings.HasPrefix(string(raw), q.Account+"/"+q.Name+"/") {
		return -1, sqsError("ReceiptHandleIsInvalid", "The input receipt handle \"%s\" is not a valid receipt handle.", receipt)
	}
	return slices.IndexFunc(q.Messages, func(m *sqsMessage) bool { return m.Receipt == receipt }), nil
}

func (s *sqsService) deleteMessage(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueURL      string `json:"QueueUrl"`
		ReceiptHandle string
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queue(c, in.QueueURL)
	if err != nil {
		return nil, err
	}
	return nil, s.remove(c, q, in.ReceiptHandle)
}

// remove deletes the message of a receipt handle; a handle of a message
// already gone is not an error, as in SQS. s.mu held.
func (s *sqsService) remove(c *sqsCall, q *sqsQueue, receipt string) *apiError {
	i, err := s.byReceipt(q, receipt)
	if err != nil {
		return err
	}
	if i >= 0 {
		q.Messages = slices.Delete(q.Messages, i, i+1)
		c.dirty = true
	}
	return nil
}

func (s *sqsService) deleteMessageBatch(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueURL string `json:"QueueUrl"`
		Entries  []struct {
			ID            string `json:"Id"`
			ReceiptHandle string
		}
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(in.Entries))
	for _, e := range in.Entries {
		ids = append(ids, e.ID)
	}
	return s.runBatch(c, in.QueueURL, ids, func(q *sqsQueue, i int) (map[string]string, *apiError) {
		return map[string]string{}, s.remove(c, q, in.Entries[i].ReceiptHandle)
	})
}

func (s *sqsService) changeMessageVisibility(c *sqsCall, body []byte) (any, *apiError) {
	var in struct {
		QueueURL          string `json:"QueueUrl"`
		ReceiptHandle     string
		VisibilityTimeout *int
	}
	if err := sqsDecode(body, &in); err != nil {
		return nil, err
	}
	if in.VisibilityTimeout == nil {
		return nil, sqsError("MissingParameter", "The request must contain the parameter VisibilityTimeout.")
	}
	if *in.VisibilityTimeout < 0 || time.Duration(*in.VisibilityTimeout)*time.Second > sqsMaxVisibility {
		return nil, sqsError("InvalidParameterValue", "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.", *in.VisibilityTimeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queue(c, in.QueueURL)
	if err != nil {
		return nil, err
	}
	i, err := s.byReceipt(q, in.ReceiptHandle)
	if err != nil {
		return nil, err
	}
	if i < 0 || !c.now.Before(q.Messages[i].VisibleAt) {
		return nil, sqsError("MessageNotInflight", "Message does not exist or is not available for visibility timeout change.")
	}
	q.Messages[i].VisibleAt = c.now.Add(time.Duration(*in.VisibilityTimeout) * time.Second)
	c.dirty = true
	if *in.VisibilityTimeout == 0 {
		s.wake()
	}
	return nil, nil
}

// list returns every queue and its messages, by account and name. base is
// the scheme and host for the queues' URLs.
func (s *sqsService) list(base string) []SQSQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	keys := make([]string, 0, len(s.queues))
	for k := range s.queues {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]SQSQueue, 0, len(keys))
	for _, k := range keys {
		q := s.queues[k]
		s.expire(q, now)
		lq := SQSQueue{Account: q.Account, Name: q.Name, URL: queueURL(base, q.Account, q.Name), ARN: q.arn(s.region),
			Attributes: q.Attributes, Messages: []SQSMessage{}}
		for _, m := range q.Messages {
			lq.Messages = append(lq.Messages, SQSMessage{ID: m.ID, Body: m.Body, Attributes: m.Attributes, Sent: m.Sent,
				ReceiveCount: m.ReceiveCount, Visible: !now.Before(m.VisibleAt)})
		}
		out = append(out, lq)
	}
	return out
}

type sqsState struct {
	Queues []*sqsQueue `json:"queues"`
}

func (s *sqsService) snapshot() (json.RawMessage, error) {
	s.mu.Lock()
	st := sqsState{Queues: make([]*sqsQueue, 0, len(s.queues))}
	for _, q := range s.queues {
		st.Queues = append(st.Queues, q)
	}
	b, err := json.Marshal(st)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sqs: encode snapshot: %w", err)
	}
	return b, nil
}

func (s *sqsService) restore(raw json.RawMessage) error {
	var st sqsState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("sqs: decode snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queues = map[string]*sqsQueue{}
	for _, q := range st.Queues {
		s.queues[q.Account+"/"+q.Name] = q
	}
	return nil
}

// SQS returns every queue of every account and its messages (GET /_sandbox/sqs).
func (s *Server) SQS() []SQSQueue { return s.sqs.list(s.URL()) }
