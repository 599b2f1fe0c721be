// Package credcache is the small on-disk cache of `keyrot credentials
// --format credential_process`: an SDK runs that command whenever it wants
// credentials (botocore does on every call when the key expires within 15
// minutes), so the command answers from a file until the key's refresh
// time, and from the same file while the API is briefly unreachable and
// the key is still before its Expiration.
//
// The AWS CLI caches assumed-role credentials the same way, in
// ~/.aws/cli/cache. Each file holds one user's secret access key: it is
// created 0600 in a 0700 directory under the user's cache directory, named
// by a hash of the API URL and the user name (no secret in the name), and
// replaced atomically (a temporary file renamed over it), so concurrent
// processes read either the old or the new file whole. A file is served
// only to a caller presenting the API key it was fetched with (the file
// holds that key's SHA-256, never the key).
package credcache

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/atomicfile"
)

// Key names one cached entry: the API it comes from, the user, and the API
// key it is served to.
type Key struct {
	APIURL string
	User   string
	APIKey string
}

// Cache is a directory of cached credentials.
type Cache struct {
	// Dir holds the files; it is created 0700 if missing.
	Dir string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Source says where credentials served came from.
type Source int

// Where credentials came from.
const (
	FromAPI   Source = iota // fetched now
	FromCache               // the cached key, before its refresh time
	// FromCacheAPIDown is the cached key past its refresh time but before
	// its Expiration, served because the API could not be reached.
	FromCacheAPIDown
)

// Result is what Get returns.
type Result struct {
	Creds  keyrot.Credentials
	Source Source
	// Unreachable is why the API was not used, with FromCacheAPIDown.
	Unreachable error
	// AskAgainAt is when the caller should ask again: the refresh time of
	// a key from the API or the cache; for a key served because the API is
	// down, half way to its Expiration, so that a caller gets back to the
	// API as soon as it may be up, and gets through a second outage with
	// what is left. Never sooner than minLead from now, never past the
	// key's Expiration.
	AskAgainAt time.Time
}

// ForSDK is the key with AskAgainAt as its Expiration: what
// credential_process prints. An SDK that runs credential_process only once
// the Expiration it was given has passed (the AWS SDK for Go does) would
// otherwise come back exactly when the cached key can no longer bridge an
// API outage; told the refresh time, it comes back while the cached key
// still can (until the key's own Expiration).
func (r Result) ForSDK() keyrot.Credentials {
	c := r.Creds
	if !r.AskAgainAt.IsZero() && r.AskAgainAt.Before(c.Expiration) {
		c.Expiration = r.AskAgainAt
	}
	return c
}

// file is the JSON kept in a cache file.
type file struct {
	Version         int
	APIURL          string
	User            string
	APIKeySHA256    string
	FetchedAt       time.Time
	AccessKeyId     string //nolint:revive // AWS's spelling
	SecretAccessKey string
	CreateDate      time.Time
	NextRotation    time.Time
	Expiration      time.Time
}

const fileVersion = 1

// Path is the file that holds k's entry.
func (c *Cache) Path(k Key) string {
	sum := sha256.Sum256([]byte(k.APIURL + "\x00" + k.User))
	return filepath.Join(c.Dir, "credentials-"+hex.EncodeToString(sum[:16])+".json")
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Get returns k's credentials: the cached ones while they are fresh (before
// RefreshAt), else fetch's, which it stores. When fetch fails because the
// API is unreachable (a transport error, a 5xx or a 429) and the cached key
// is before its Expiration, it returns the cached key with
// FromCacheAPIDown and fetch's error in Result.Unreachable. An answer from the API that the
// caller may not have the key (401, 403, 404) removes the entry. A cache
// that cannot be read or written is passed by, never an error.
func (c *Cache) Get(ctx context.Context, k Key, fetch func(context.Context) (keyrot.Credentials, error)) (Result, error) {
	now := c.now()
	cached, ok := c.read(k)
	// Fresh: before its refresh time, and never past its Expiration (a
	// file fetched "after" now, by a clock set back, could be both).
	if ok && now.Before(refreshAt(cached)) && now.Before(cached.Expiration) {
		return Result{Creds: cached.credentials(k.User), Source: FromCache, AskAgainAt: askAt(now, refreshAt(cached), cached.Expiration)}, nil
	}
	creds, err := fetch(ctx)
	switch {
	case err == nil:
		f := c.write(k, creds, now)
		return Result{Creds: creds, Source: FromAPI, AskAgainAt: askAt(now, refreshAt(f), creds.Expiration)}, nil
	case denied(err):
		_ = os.Remove(c.Path(k))
	case ok && unreachable(err) && now.Before(cached.Expiration):
		return Result{Creds: cached.credentials(k.User), Source: FromCacheAPIDown, Unreachable: err, AskAgainAt: askAt(now, now.Add(cached.Expiration.Sub(now)/2), cached.Expiration)}, nil
	}
	return Result{}, err
}

// refreshAt is when a cached key is fetched again: at NextRotation (a new
// key may be there), and always a margin before Expiration (a tenth of the
// life it had left when fetched, at most a minute). A key fetched after its
// NextRotation (the rotation is late) is checked again after a quarter of
// that life, so a consumer picks up the new key soon after it appears.
func refreshAt(f file) time.Time {
	left := f.Expiration.Sub(f.FetchedAt)
	if left <= 0 {
		return f.FetchedAt
	}
	at := f.Expiration.Add(-min(time.Minute, left/10))
	if f.NextRotation.After(f.FetchedAt) {
		return minTime(at, f.NextRotation)
	}
	return minTime(at, f.FetchedAt.Add(max(time.Second, left/4)))
}

// minLead is how far ahead an Expiration handed to an SDK is at least
// (unless the key's own is sooner): botocore checks the credentials once
// credential_process has exited and refuses any that have expired by then
// ("Credentials were refreshed, but the refreshed credentials are still
// expired").
const minLead = 2 * time.Second

// askAt is want, but no sooner than minLead from now and no later than the
// key's expiration.
func askAt(now, want, expiration time.Time) time.Time {
	if earliest := now.Add(minLead); want.Before(earliest) {
		want = earliest
	}
	if want.After(expiration) {
		return expiration
	}
	return want
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// denied reports an API answer that the caller may not have the key.
func denied(err error) bool {
	var apiErr *keyrothttp.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

// unreachable reports a failure that says nothing about the key: the API
// could not be reached or could not answer (restarting, overloaded).
func unreachable(err error) bool {
	if errors.Is(err, keyrothttp.ErrCrossOriginRedirect) || errors.Is(err, context.Canceled) {
		return false
	}
	var apiErr *keyrothttp.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status >= 500 || apiErr.Status == http.StatusTooManyRequests
	}
	return true // a transport error: refused, reset, timed out, DNS
}

func (f file) credentials(user string) keyrot.Credentials {
	return keyrot.Credentials{UserName: user, AccessKeyID: f.AccessKeyId, SecretAccessKey: f.SecretAccessKey,
		CreateDate: f.CreateDate, NextRotation: f.NextRotation, Expiration: f.Expiration}
}

func apiKeyHash(k Key) string {
	sum := sha256.Sum256([]byte(k.APIKey))
	return hex.EncodeToString(sum[:])
}

// read returns k's entry if its file holds a whole, matching one. Anything
// else (missing, corrupted, another API key's) is a miss.
func (c *Cache) read(k Key) (file, bool) {
	b, err := os.ReadFile(c.Path(k))
	if err != nil {
		return file{}, false
	}
	var f file
	if json.Unmarshal(b, &f) != nil || f.Version != fileVersion || f.APIURL != k.APIURL || f.User != k.User ||
		f.AccessKeyId == "" || f.SecretAccessKey == "" || f.FetchedAt.IsZero() || f.Expiration.IsZero() ||
		subtle.ConstantTimeCompare([]byte(f.APIKeySHA256), []byte(apiKeyHash(k))) != 1 {
		return file{}, false
	}
	return f, true
}

// write replaces k's file atomically and returns what it holds; a failure
// leaves the old file (or none) and is otherwise ignored: the cache only
// saves calls.
func (c *Cache) write(k Key, creds keyrot.Credentials, now time.Time) file {
	f := file{
		Version: fileVersion, APIURL: k.APIURL, User: k.User, APIKeySHA256: apiKeyHash(k), FetchedAt: now,
		AccessKeyId: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey,
		CreateDate: creds.CreateDate, NextRotation: creds.NextRotation, Expiration: creds.Expiration,
	}
	_ = c.put(k, f)
	return f
}

func (c *Cache) put(k Key, f file) error {
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("credcache: encode: %w", err)
	}
	if err := atomicfile.Write(c.Dir, filepath.Base(c.Path(k)), body); err != nil {
		return fmt.Errorf("credcache: %w", err)
	}
	return nil
}
