package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyrot/keyrot"
)

// PayloadVersion is the version of the Payload's shape. It changes only
// when a field changes meaning or goes away; new fields may be added
// without it changing.
const PayloadVersion = "1"

// Payload is an event as keyrot sends it to webhooks and EventBridge (as
// the detail). Times are RFC 3339 in UTC; empty fields are left out.
type Payload struct {
	Version string `json:"version"`
	// ID identifies the event: the same on every attempt and on every
	// channel, so a receiver can drop a duplicate.
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Warning string `json:"warning,omitempty"`
	User    string `json:"user,omitempty"`
	KeyID   string `json:"key_id,omitempty"`
	Owner   string `json:"owner,omitempty"`
	Time    string `json:"time"`
	Summary string `json:"summary"`
	Next    string `json:"next,omitempty"`
	NextAt  string `json:"next_at,omitempty"`
	// LastUsed is the key's last use, for deactivations and key-in-use warnings.
	LastUsed string `json:"last_used,omitempty"`
	Error    string `json:"error,omitempty"`
	// APIKey names the REST API key an api_key_expiring warning is about.
	APIKey string `json:"api_key,omitempty"`
}

// NewPayload is the payload of e, with its ID.
func NewPayload(e keyrot.Event) Payload {
	p := Payload{
		Version: PayloadVersion, Kind: string(e.Kind), Warning: string(e.Warning), User: e.User, KeyID: e.KeyID,
		Owner: e.Owner, Time: stamp(e.Time), Summary: e.Summary, Next: e.Next, NextAt: stamp(e.NextAt),
		LastUsed: stamp(e.LastUsed), Error: e.Err, APIKey: e.APIKey,
	}
	p.ID = EventID(e)
	return p
}

// EventID is a stable id of e: a hash of what the event says, so that the
// same event delivered twice (a retry, another channel) has the same id.
func EventID(e keyrot.Event) string {
	h := sha256.New()
	for _, s := range []string{string(e.Kind), string(e.Warning), e.User, e.KeyID, e.APIKey, stamp(e.Time), e.Summary, e.Err} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// JSON is the payload encoded.
func (p Payload) JSON() []byte {
	b, err := json.Marshal(p)
	if err != nil {
		// A struct of strings always encodes.
		panic(fmt.Sprintf("notify: encode payload: %v", err))
	}
	return b
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
