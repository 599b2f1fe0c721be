package sandbox

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// EventBridge limits the sandbox enforces, as AWS documents them for
// PutEvents.
const (
	eventsMaxEntries   = 10         // entries per request
	eventsMaxSize      = 256 * 1024 // bytes, all entries of a request
	eventsOutboxSize   = 10000      // events kept in the outbox
	eventsDefaultBus   = "default"
	eventsTargetPrefix = "AWSEvents."
)

// BusEvent is one event PutEvents accepted, as shown at
// GET /_sandbox/events. Detail is the entry's detail, a JSON object.
type BusEvent struct {
	EventID    string          `json:"eventId"`
	EventBus   string          `json:"eventBus"`
	Source     string          `json:"source"`
	DetailType string          `json:"detailType"`
	Detail     json.RawMessage `json:"detail"`
	Resources  []string        `json:"resources,omitempty"`
	Time       time.Time       `json:"time"`
	SentBy     string          `json:"sentBy,omitempty"` // ARN of the signer
}

// eventsService is the sandbox's EventBridge: PutEvents into a bounded
// outbox, on any bus name (buses are not modelled). Memory only: the outbox
// is not persisted with --data. Safe for concurrent use.
type eventsService struct {
	clock  Clock
	region string
	acct   string

	mu  sync.Mutex
	rng *rand.Rand
	box []BusEvent // oldest first, at most eventsOutboxSize
}

func newEvents(clock Clock, region, account string, seed int64) *eventsService {
	return &eventsService{clock: clock, region: region, acct: account, rng: rand.New(rand.NewPCG(uint64(seed), 0xeb))}
}

// handle runs one EventBridge operation (JSON 1.1, X-Amz-Target
// AWSEvents.<Op>).
func (s *eventsService) handle(caller principal, op string, body []byte) (any, *apiError) {
	if !caller.Admin {
		return nil, errorf(http.StatusBadRequest, "AccessDeniedException",
			"User: %s is not authorized to perform: events:%s because no identity-based policy allows the events:%s action",
			caller.ARN, op, op)
	}
	if op != "PutEvents" {
		return nil, errorf(http.StatusBadRequest, "UnknownOperationException", "The operation %q is not supported by the keyrot sandbox's EventBridge.", op)
	}
	return s.putEvents(caller, body)
}

type putEventsEntry struct {
	Source       *string  `json:"Source"`
	DetailType   *string  `json:"DetailType"`
	Detail       *string  `json:"Detail"`
	EventBusName *string  `json:"EventBusName"`
	Resources    []string `json:"Resources"`
	Time         *float64 `json:"Time"` // epoch seconds, as JSON 1.1 writes timestamps
	TraceHeader  *string  `json:"TraceHeader"`
}

type putEventsResultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

func (s *eventsService) putEvents(caller principal, body []byte) (any, *apiError) {
	var req struct {
		Entries    []putEventsEntry `json:"Entries"`
		EndpointID *string          `json:"EndpointId"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, errorf(http.StatusBadRequest, "SerializationException", "Could not parse the request: %v", err)
	}
	if n := len(req.Entries); n < 1 || n > eventsMaxEntries {
		return nil, errorf(http.StatusBadRequest, "ValidationException",
			"1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and %d", eventsMaxEntries)
	}
	size := 0
	for _, e := range req.Entries {
		size += entrySize(e)
	}
	if size > eventsMaxSize {
		return nil, errorf(http.StatusBadRequest, "ValidationException", "Total size of the entries in the request is over the limit.")
	}
	now := s.clock.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]putEventsResultEntry, len(req.Entries))
	failed := 0
	for i, e := range req.Entries {
		ev, code, msg := s.accept(e, now)
		if code != "" {
			out[i] = putEventsResultEntry{ErrorCode: code, ErrorMessage: msg}
			failed++
			continue
		}
		ev.SentBy = caller.ARN
		s.box = append(s.box, ev)
		if len(s.box) > eventsOutboxSize {
			s.box = append([]BusEvent(nil), s.box[len(s.box)-eventsOutboxSize:]...)
		}
		out[i] = putEventsResultEntry{EventID: ev.EventID}
	}
	return map[string]any{"FailedEntryCount": failed, "Entries": out}, nil
}

// accept checks one entry as PutEvents does, failing the entry (not the
// request) with AWS's codes. Called with mu held.
func (s *eventsService) accept(e putEventsEntry, now time.Time) (BusEvent, string, string) {
	for _, f := range []struct {
		name string
		v    *string
	}{{"Source", e.Source}, {"DetailType", e.DetailType}, {"Detail", e.Detail}} {
		if f.v == nil || *f.v == "" {
			return BusEvent{}, "InvalidArgument", fmt.Sprintf("Parameter %s is not valid. Reason: %s is a required argument.", f.name, f.name)
		}
	}
	if strings.HasPrefix(*e.Source, "aws.") {
		return BusEvent{}, "NotAuthorizedForSourceException", "Not authorized for the source."
	}
	var detail map[string]any
	if err := json.Unmarshal([]byte(*e.Detail), &detail); err != nil {
		return BusEvent{}, "MalformedDetail", "Detail is malformed."
	}
	bus := eventsDefaultBus
	if e.EventBusName != nil && *e.EventBusName != "" {
		bus = *e.EventBusName
		// An ARN names a bus of this account and region.
		if name, ok := strings.CutPrefix(bus, fmt.Sprintf("arn:aws:events:%s:%s:event-bus/", s.region, s.acct)); ok {
			bus = name
		} else if strings.HasPrefix(bus, "arn:") {
			return BusEvent{}, "InvalidArgument", fmt.Sprintf("Parameter EventBusName is not valid. Reason: %q is not an event bus of this account and region.", bus)
		}
	}
	at := now
	if e.Time != nil {
		// Epoch seconds as a float: kept to the millisecond, as AWS does.
		at = time.UnixMilli(int64(math.Round(*e.Time * 1e3))).UTC()
	}
	id := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", s.rng.Uint32(), s.rng.Uint32()&0xffff, s.rng.Uint32()&0xffff, s.rng.Uint32()&0xffff, s.rng.Uint64()&0xffffffffffff)
	return BusEvent{EventID: id, EventBus: bus, Source: *e.Source, DetailType: *e.DetailType,
		Detail: json.RawMessage(*e.Detail), Resources: e.Resources, Time: at}, "", ""
}

// entrySize is an entry's size as AWS counts it toward the request limit.
func entrySize(e putEventsEntry) int {
	n := 14 // Time
	for _, s := range []*string{e.Source, e.DetailType, e.Detail} {
		if s != nil {
			n += len(*s)
		}
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

func (s *eventsService) outbox() []BusEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BusEvent{}, s.box...)
}

func (s *eventsService) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.box = nil
}

// BusEvents returns the events PutEvents accepted, oldest first.
func (s *Server) BusEvents() []BusEvent { return s.events.outbox() }

// ClearBusEvents empties the EventBridge outbox.
func (s *Server) ClearBusEvents() { s.events.clear() }

// eventsRoutes serves the EventBridge outbox: GET /_sandbox/events lists
// the accepted events as JSON, DELETE empties it.
func (s *Server) eventsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sandbox/events", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.BusEvents())
	})
	mux.HandleFunc("DELETE /_sandbox/events", func(w http.ResponseWriter, r *http.Request) {
		s.ClearBusEvents()
		w.WriteHeader(http.StatusNoContent)
	})
}
