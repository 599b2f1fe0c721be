package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Faults are the failures the sandbox injects into AWS calls. The admin
// endpoint /_sandbox/faults reads and replaces them as JSON, with durations
// written as Go duration strings ("250ms", "10s").
type Faults struct {
	// Rules make matching calls fail with a throttling or a 5xx error.
	Rules []FaultRule `json:"rules,omitempty"`
	// Latency is added to every AWS call, in real time.
	Latency time.Duration `json:"latency,omitempty"`
	// PropagationDelay: a new IAM access key is not accepted (STS, signature
	// checks) until its CreateDate plus this delay, on the sandbox's Clock.
	// The delay in force when a key is created is the one it gets: changing
	// it later does not withdraw a key already accepted.
	PropagationDelay time.Duration `json:"propagation_delay,omitempty"`
}

// FaultRule makes matching AWS calls fail.
type FaultRule struct {
	// Operation is the AWS operation, e.g. "CreateAccessKey"; "" or "*" matches all.
	Operation string `json:"operation,omitempty"`
	// Service optionally restricts the rule to "iam", "sts",
	// "secretsmanager", "ses", "organizations" or "sqs".
	Service string `json:"service,omitempty"`
	// Account optionally restricts the rule to calls that run in that
	// account (the account of the caller's credentials), e.g. to throttle
	// one member account of an Organization.
	Account string `json:"account,omitempty"`
	// Kind is "throttle", "5xx", or "lost_response": the call takes effect,
	// then the client is told it failed (a 5xx), as when a response is lost
	// on its way back.
	Kind string `json:"kind"`
	// Rate is the probability that a matching call fails, drawn from the
	// seeded random number generator.
	Rate float64 `json:"rate,omitempty"`
	// Count, if positive, makes the next Count matching calls fail, after
	// which the rule is spent and removed. It takes precedence over Rate.
	Count int `json:"count,omitempty"`
}

// Fault kinds.
const (
	FaultThrottle     = "throttle"
	Fault5xx          = "5xx"
	FaultLostResponse = "lost_response"
)

type faultsJSON struct {
	Rules            []FaultRule  `json:"rules,omitempty"`
	Latency          jsonDuration `json:"latency,omitempty"`
	PropagationDelay jsonDuration `json:"propagation_delay,omitempty"`
}

// MarshalJSON writes durations as strings such as "2s".
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{Rules: f.Rules, Latency: jsonDuration(f.Latency), PropagationDelay: jsonDuration(f.PropagationDelay)})
}

// UnmarshalJSON accepts durations as strings ("2s") or as integer nanoseconds.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var v faultsJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Faults{Rules: v.Rules, Latency: time.Duration(v.Latency), PropagationDelay: time.Duration(v.PropagationDelay)}
	return nil
}

type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("parse duration %q: %w", s, err)
		}
		*d = jsonDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string like \"2s\" or integer nanoseconds, got %s", b)
	}
	*d = jsonDuration(n)
	return nil
}

func (f Faults) validate() error {
	if f.Latency < 0 || f.PropagationDelay < 0 {
		return fmt.Errorf("faults: latency and propagation_delay must not be negative")
	}
	for i, r := range f.Rules {
		if r.Kind != FaultThrottle && r.Kind != Fault5xx && r.Kind != FaultLostResponse {
			return fmt.Errorf("faults: rule %d: kind %q: want %q, %q or %q", i, r.Kind, FaultThrottle, Fault5xx, FaultLostResponse)
		}
		if r.Rate < 0 || r.Rate > 1 {
			return fmt.Errorf("faults: rule %d: rate %v: want 0..1", i, r.Rate)
		}
		if r.Count < 0 {
			return fmt.Errorf("faults: rule %d: count %d: must not be negative", i, r.Count)
		}
		switch r.Service {
		case "", svcIAM, svcSTS, svcSecretsManager, svcSES, svcOrganizations, svcSQS:
		default:
			return fmt.Errorf("faults: rule %d: unknown service %q", i, r.Service)
		}
	}
	return nil
}

// faultInjector decides, call by call, whether to inject a fault.
type faultInjector struct {
	mu       sync.Mutex
	rng      *rand.Rand
	faults   Faults
	injected map[string]uint64 // by kind, since the sandbox started
}

// FaultCounts is how many faults of each kind the sandbox has injected
// since it started (GET /_sandbox/faults/injected).
type FaultCounts map[string]uint64

func newFaultInjector(seed int64, f Faults) *faultInjector {
	fi := &faultInjector{rng: rand.New(rand.NewPCG(uint64(seed), 0xfa017)), injected: map[string]uint64{}}
	fi.set(f)
	return fi
}

func (fi *faultInjector) set(f Faults) {
	f.Rules = append([]FaultRule(nil), f.Rules...)
	fi.mu.Lock()
	fi.faults = f
	fi.mu.Unlock()
}

func (fi *faultInjector) get() Faults {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	f := fi.faults
	f.Rules = append([]FaultRule(nil), f.Rules...)
	return f
}

func (fi *faultInjector) counts() FaultCounts {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	out := FaultCounts{FaultThrottle: 0, Fault5xx: 0, FaultLostResponse: 0}
	for k, n := range fi.injected {
		out[k] = n
	}
	return out
}

func (fi *faultInjector) propagationDelay() time.Duration {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return fi.faults.PropagationDelay
}

// delay waits for the configured latency, or until ctx is done.
func (fi *faultInjector) delay(ctx context.Context) error {
	fi.mu.Lock()
	d := fi.faults.Latency
	fi.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// check returns the error to inject into this call, or nil. lost reports
// that the call is to be carried out first and its response replaced by
// the error.
func (fi *faultInjector) check(service, op, account string) (injected *apiError, lost bool) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	for i := range fi.faults.Rules {
		r := &fi.faults.Rules[i]
		if r.Service != "" && r.Service != service || r.Account != "" && r.Account != account {
			continue
		}
		if r.Operation != "" && r.Operation != "*" && r.Operation != op {
			continue
		}
		switch {
		case r.Count > 0:
			kind := r.Kind
			r.Count--
			if r.Count == 0 { // spent
				fi.faults.Rules = slices.Delete(fi.faults.Rules, i, i+1)
			}
			fi.injected[kind]++
			return faultError(service, kind), kind == FaultLostResponse
		case r.Rate > 0 && fi.rng.Float64() < r.Rate:
			fi.injected[r.Kind]++
			return faultError(service, r.Kind), r.Kind == FaultLostResponse
		}
	}
	return nil, false
}

// faultError is the error AWS itself returns when it throttles or fails, in
// each service's words; the SDK retryers classify all of them as retryable.
// A lost response looks like a 5xx to the client.
func faultError(service, kind string) *apiError {
	if kind == FaultThrottle {
		switch service {
		case svcSecretsManager:
			return errorf(http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		case svcSES:
			return errorf(http.StatusTooManyRequests, "TooManyRequestsException", "Too many requests.")
		case svcOrganizations:
			return errorf(http.StatusBadRequest, "TooManyRequestsException", "AWS Organizations can't complete your request because another request is already in progress. Try again later.")
		default:
			return errorf(http.StatusBadRequest, "Throttling", "Rate exceeded")
		}
	}
	switch service {
	case svcIAM:
		return errorf(http.StatusInternalServerError, "ServiceFailure", "The request processing has failed because of an unknown error, exception or failure.")
	case svcSecretsManager:
		return errorf(http.StatusInternalServerError, "InternalServiceError", "An error occurred on the server side.")
	case svcSES:
		return errorf(http.StatusInternalServerError, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure.")
	default:
		return errorf(http.StatusInternalServerError, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure.")
	}
}
