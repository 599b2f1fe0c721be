package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/keyrot/keyrot/webhook"
)

// verifyKeyrot is the receiver's check from docs/notifications.md, with the
// standard library only: the HMAC-SHA256 of "<timestamp>.<body>" under the
// shared secret, compared in constant time, and a timestamp within five
// minutes.
func verifyKeyrot(secret []byte, r *http.Request, body []byte, now time.Time) error {
	ts := r.Header.Get("X-Keyrot-Timestamp")
	sig, ok := strings.CutPrefix(r.Header.Get("X-Keyrot-Signature"), "sha256=")
	if ts == "" || !ok {
		return errors.New("unsigned request")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return errors.New("stale or bad timestamp")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return errors.New("bad signature")
	}
	return nil
}

// A receiver checks each delivery before it trusts it, and answers 2xx
// only for one it accepted. webhook.Verify does the same check.
func Example_receiver() {
	secret := []byte("the value of the variable secret_env names")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		if err := verifyKeyrot(secret, r, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		// Same check, keyrot's helper:
		if err := webhook.Verify(secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		// Deduplicate by X-Keyrot-Delivery, then act on the event.
		fmt.Println(r.Header.Get("X-Keyrot-Event"), "accepted")
		w.WriteHeader(http.StatusNoContent)
	})

	body := []byte(`{"version":"1","id":"0f3a","kind":"key_created","user":"ci-bot"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	for _, sig := range []string{webhook.Sign(secret, ts, body), webhook.Sign([]byte("wrong"), ts, body)} {
		req := httptest.NewRequest(http.MethodPost, "/keyrot", strings.NewReader(string(body)))
		req.Header.Set("X-Keyrot-Event", "key_created")
		req.Header.Set("X-Keyrot-Timestamp", ts)
		req.Header.Set("X-Keyrot-Signature", sig)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// key_created accepted
	// 204
	// 401
}
