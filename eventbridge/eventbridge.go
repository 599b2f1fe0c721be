// Package eventbridge puts keyrot's events on an Amazon EventBridge bus
// with PutEvents, one entry per event:
//
//	Source:       keyrot
//	DetailType:   "Key Created", "Key Deactivated", "Key Deleted",
//	              "Rotation Failed", "Rotation Recovered" or "Warning"
//	Detail:       the event's JSON (notify.Payload)
//	Time:         when the event happened
//	EventBusName: the configured bus (default "default")
//
// It needs events:PutEvents on the bus.
package eventbridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awseb "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/notify"
)

// Source is every entry's source.
const Source = "keyrot"

// DefaultBus is the account's default event bus.
const DefaultBus = "default"

// API is the part of the EventBridge client the Deliverer uses.
type API interface {
	PutEvents(ctx context.Context, params *awseb.PutEventsInput, optFns ...func(*awseb.Options)) (*awseb.PutEventsOutput, error)
}

var _ API = (*awseb.Client)(nil)

// Deliverer puts events on one bus.
type Deliverer struct {
	api API
	bus string
}

var _ notify.Deliverer = (*Deliverer)(nil)

// New returns a Deliverer putting events on bus (a name or an ARN; empty
// is the default bus) through api.
func New(api API, bus string) *Deliverer {
	if bus == "" {
		bus = DefaultBus
	}
	return &Deliverer{api: api, bus: bus}
}

// DetailType is the entry's detail-type for an event kind: the kind's
// words capitalised, "key_created" -> "Key Created".
func DetailType(kind keyrot.EventKind) string {
	words := strings.Split(string(kind), "_")
	for i, w := range words {
		if w != "" {
			words[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(words, " ")
}

// Deliver puts d's event on the bus. A throttled or failed request, or an
// entry failed with ThrottlingException or InternalFailure, is retried;
// any other failure (access denied, no such bus, a malformed entry) is
// permanent.
func (eb *Deliverer) Deliver(ctx context.Context, d notify.Delivery) error {
	entry := types.PutEventsRequestEntry{
		Source: aws.String(Source), DetailType: aws.String(DetailType(d.Event.Kind)),
		Detail: aws.String(string(d.Payload.JSON())), EventBusName: aws.String(eb.bus),
	}
	if !d.Event.Time.IsZero() {
		entry.Time = aws.Time(d.Event.Time)
	}
	out, err := eb.api.PutEvents(ctx, &awseb.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry}})
	if err != nil {
		err = fmt.Errorf("eventbridge: put event on bus %q: %w", eb.bus, err)
		// An answer in the 4xx range that is not throttling is the
		// request's fault: retrying repeats it.
		var apiErr smithy.APIError
		var resp *awshttp.ResponseError
		if errors.As(err, &apiErr) && !retryableCode(apiErr.ErrorCode()) &&
			errors.As(err, &resp) && resp.HTTPStatusCode() >= 400 && resp.HTTPStatusCode() < 500 {
			return notify.Permanent(err)
		}
		return err
	}
	if out.FailedEntryCount == 0 {
		return nil
	}
	code, msg := "unknown", ""
	if len(out.Entries) > 0 {
		code, msg = aws.ToString(out.Entries[0].ErrorCode), aws.ToString(out.Entries[0].ErrorMessage)
	}
	err = fmt.Errorf("eventbridge: put event on bus %q: entry failed: %s: %s", eb.bus, code, msg)
	if retryableCode(code) {
		return err
	}
	return notify.Permanent(err)
}

// retryableCode reports whether an error code says "try again later".
func retryableCode(code string) bool {
	switch code {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "InternalFailure", "InternalException", "ServiceUnavailable":
		return true
	}
	return false
}
