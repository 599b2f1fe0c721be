package http

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

// APIKeyPrefix starts every key GenerateAPIKey makes, so secret scanners
// (and people) recognise a leaked keyrot API key.
const APIKeyPrefix = "krt_"

// hashPrefix marks the hash algorithm in APIKey.Hash.
const hashPrefix = "sha256:"

// AllUsers is the scope that grants every managed user, whatever its name.
const AllUsers = "*"

// APIKey is a named API key with its scope. Only the key's hash is kept:
// the key itself is shown once, when it is generated.
type APIKey struct {
	// Name identifies the key in audit records, logs and metrics.
	Name string `json:"name" yaml:"name"`
	// Hash is "sha256:<hex>" of the key. API keys are 256-bit random
	// tokens, so a fast hash is right: a slow password hash (bcrypt)
	// protects guessable passwords and would cost every request
	// milliseconds for nothing.
	Hash string `json:"hash" yaml:"hash"`
	// Users are the IAM user names the key may read, as names or
	// path.Match globs ("ci-*"); "*" is every user.
	Users []string `json:"users" yaml:"users"`
	// List allows GET /credentials (which still returns only Users).
	List bool `json:"list" yaml:"list"`
	// Created is when the key was made (keyrot apikey new and rotate set it).
	Created time.Time `json:"created,omitzero" yaml:"created,omitempty"`
	// Expires, if set, is when the key stops working: from then on it gets
	// 401 "API key expired", and its audit records say "expired". Zero is no
	// expiry (the seed's API_KEY, and keys made with a lifetime of 0).
	Expires time.Time `json:"expires,omitzero" yaml:"expires,omitempty"`
	// ReplacedBy names the key's successor once keyrot apikey rotate made
	// one: the key is retiring, its Expires is the end of the overlap, and
	// it is not warned about as expiring.
	ReplacedBy string `json:"replaced_by,omitempty" yaml:"replaced_by,omitempty"`
}

// Expired reports whether the key has an expiry and now is at or past it.
func (k APIKey) Expired(now time.Time) bool {
	return !k.Expires.IsZero() && !now.Before(k.Expires)
}

// GenerateAPIKey returns a new random API key (256 bits, prefixed with
// APIKeyPrefix) and the hash to put in the configuration.
func GenerateAPIKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("http: generate api key: %w", err)
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// HashAPIKey returns the "sha256:<hex>" hash of key, as APIKey.Hash holds it.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// FullAccessKey is the seed's API_KEY: one key that may read and list every
// managed user. Only its hash is kept.
func FullAccessKey(name, key string) APIKey {
	return APIKey{Name: name, Hash: HashAPIKey(key), Users: []string{AllUsers}, List: true}
}

// Validate reports the first problem with the key's fields.
func (k APIKey) Validate() error {
	if strings.TrimSpace(k.Name) == "" {
		return fmt.Errorf("api key: name is empty")
	}
	if _, err := parseHash(k.Hash); err != nil {
		return fmt.Errorf("api key %q: %w", k.Name, err)
	}
	if len(k.Users) == 0 {
		return fmt.Errorf("api key %q: users is empty: list the user names or globs it may read", k.Name)
	}
	for _, u := range k.Users {
		if u == "" {
			return fmt.Errorf("api key %q: empty user pattern", k.Name)
		}
		if _, err := path.Match(u, ""); err != nil {
			return fmt.Errorf("api key %q: user pattern %q: %w", k.Name, u, err)
		}
	}
	if !k.Expires.IsZero() && !k.Created.IsZero() && k.Expires.Before(k.Created) {
		return fmt.Errorf("api key %q: expires %s is before created %s", k.Name, k.Expires.UTC().Format(time.RFC3339), k.Created.UTC().Format(time.RFC3339))
	}
	return nil
}

// allUsers reports whether the key may read every user, whatever its name.
func (k APIKey) allUsers() bool {
	for _, p := range k.Users {
		if p == AllUsers {
			return true
		}
	}
	return false
}

// Allows reports whether the key's scope covers user.
func (k APIKey) Allows(user string) bool {
	for _, p := range k.Users {
		if p == AllUsers {
			return true
		}
		if ok, _ := path.Match(p, user); ok {
			return true
		}
	}
	return false
}

func parseHash(h string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	hexPart, ok := strings.CutPrefix(h, hashPrefix)
	if !ok {
		return sum, fmt.Errorf("hash must be %q followed by 64 hex digits (see keyrot apikey), not the key itself", hashPrefix)
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != sha256.Size {
		return sum, fmt.Errorf("hash must be %q followed by 64 hex digits", hashPrefix)
	}
	copy(sum[:], b)
	return sum, nil
}

// ParseKeys reads API keys kept as JSON, either a list of keys or an object
// {"keys": [...]}, as stored in a Secrets Manager secret, and validates them.
// Names must be unique; hashes must be "sha256:<hex>".
func ParseKeys(r io.Reader) ([]APIKey, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("api keys: read: %w", err)
	}
	var keys []APIKey
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "{") {
		var doc struct {
			Keys []APIKey `json:"keys"`
		}
		dec := json.NewDecoder(strings.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("api keys: decode: %w", err)
		}
		keys = doc.Keys
	} else {
		dec := json.NewDecoder(strings.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&keys); err != nil {
			return nil, fmt.Errorf("api keys: decode: %w", err)
		}
	}
	if _, err := newKeyring(keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// keyring finds the API key a request presents.
//
// Lookup hashes the presented key and finds the hash in a map. A map lookup
// is not constant time, but what it could leak through timing is a prefix
// of the SHA-256 of the presented key, and the attacker chose that key: to
// use the leak it would have to find a preimage of a hash it learned, which
// for 256-bit random keys is as hard as guessing the key. The final
// comparison is nonetheless done with subtle.ConstantTimeCompare, so the
// match itself does not depend on how many bytes agree.
type keyEntry struct {
	key  *APIKey
	hash [sha256.Size]byte
	// expires is key.Expires in Unix nanoseconds, 0 for none: one integer
	// compare on the request path.
	expires int64
}

type keyring struct {
	byHash map[[sha256.Size]byte]*keyEntry
	keys   []APIKey
}

func newKeyring(keys []APIKey) (*keyring, error) {
	kr := &keyring{byHash: make(map[[sha256.Size]byte]*keyEntry, len(keys)), keys: make([]APIKey, len(keys))}
	copy(kr.keys, keys)
	names := make(map[string]bool, len(keys))
	for i := range kr.keys {
		k := &kr.keys[i]
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("api keys: key %d: %w", i, err)
		}
		if names[k.Name] {
			return nil, fmt.Errorf("api keys: key %d: duplicate name %q", i, k.Name)
		}
		names[k.Name] = true
		sum, _ := parseHash(k.Hash)
		if other, dup := kr.byHash[sum]; dup {
			return nil, fmt.Errorf("api keys: keys %q and %q have the same hash", other.key.Name, k.Name)
		}
		e := &keyEntry{key: k, hash: sum}
		if !k.Expires.IsZero() {
			e.expires = k.Expires.UnixNano()
		}
		kr.byHash[sum] = e
	}
	return kr, nil
}

// lookup returns the key whose hash is the hash of presented, or nil.
func (kr *keyring) lookup(presented string) *APIKey {
	e := kr.entry(presented)
	if e == nil {
		return nil
	}
	return e.key
}

// entry returns the entry of the key whose hash is the hash of presented, or nil.
func (kr *keyring) entry(presented string) *keyEntry {
	if presented == "" || len(presented) > maxAPIKeyLen {
		return nil
	}
	// Hash from a stack copy: []byte(presented) would allocate.
	var buf [maxAPIKeyLen]byte
	sum := sha256.Sum256(buf[:copy(buf[:], presented)])
	e, ok := kr.byHash[sum]
	if !ok || subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1 {
		return nil
	}
	return e
}

// expiredAt reports whether the entry's key has expired at now (Unix nanoseconds).
func (e *keyEntry) expiredAt(now int64) bool { return e.expires != 0 && now >= e.expires }

// maxAPIKeyLen bounds what is hashed; generated keys are 47 bytes.
const maxAPIKeyLen = 512

// NewKey makes a random API key named name for users (list: may it call
// GET /credentials), created at now and expiring lifetime later (never with
// a lifetime of 0). It returns the key, to be shown once, and its entry.
func NewKey(name string, users []string, list bool, now time.Time, lifetime time.Duration) (key string, entry APIKey, err error) {
	key, hash, err := GenerateAPIKey()
	if err != nil {
		return "", APIKey{}, err
	}
	now = now.UTC().Truncate(time.Second)
	entry = APIKey{Name: name, Hash: hash, Users: append([]string(nil), users...), List: list, Created: now}
	if lifetime > 0 {
		entry.Expires = now.Add(lifetime)
	}
	if err := entry.Validate(); err != nil {
		return "", APIKey{}, err
	}
	return key, entry, nil
}

// RetiringSuffix is added to a key's name when RotateKey replaces it.
const RetiringSuffix = ".old"

// RotateKey replaces the key named name in keys by a successor with the
// same name and scope (NewKey, with lifetime). The old key stays valid for
// overlap, renamed name+".old" with ReplacedBy set, so its audit records say
// which consumers have not switched yet; its expiry only ever moves
// earlier, so rotating never revives an expired key. A retiring key left
// from an earlier rotation is dropped once expired; while still valid, the
// rotation is refused (its consumers may still use it). It returns the new
// list, in the same order with the successor in the old key's place and the
// retiring key after it, and the new key, to be shown once.
func RotateKey(keys []APIKey, name string, now time.Time, lifetime, overlap time.Duration) (next []APIKey, key string, err error) {
	i := slices.IndexFunc(keys, func(k APIKey) bool { return k.Name == name })
	if i < 0 {
		names := make([]string, len(keys))
		for j, k := range keys {
			names[j] = k.Name
		}
		return nil, "", fmt.Errorf("api keys: no key named %q (have: %s)", name, strings.Join(names, ", "))
	}
	old := keys[i]
	if old.ReplacedBy != "" {
		return nil, "", fmt.Errorf("api keys: %q is already retiring in favour of %q: rotate %q", name, old.ReplacedBy, old.ReplacedBy)
	}
	retiring := name + RetiringSuffix
	if j := slices.IndexFunc(keys, func(k APIKey) bool { return k.Name == retiring }); j >= 0 {
		if prev := keys[j]; !prev.Expired(now) {
			until := "without expiry"
			if !prev.Expires.IsZero() {
				until = "until " + prev.Expires.UTC().Format(time.RFC3339)
			}
			return nil, "", fmt.Errorf("api keys: %q, the key before the last rotation, is still valid %s and consumers may still use it: rotate again after that, or remove it from the keys first", retiring, until)
		}
	}
	key, successor, err := NewKey(name, old.Users, old.List, now, lifetime)
	if err != nil {
		return nil, "", err
	}
	end := now.UTC().Truncate(time.Second).Add(overlap)
	if old.Expires.IsZero() || end.Before(old.Expires) {
		old.Expires = end
	}
	old.Name, old.ReplacedBy = retiring, name
	for j, k := range keys {
		switch {
		case j == i:
			next = append(next, successor, old)
		case k.Name != retiring:
			next = append(next, k)
		}
	}
	if _, err := newKeyring(next); err != nil {
		return nil, "", err
	}
	return next, key, nil
}
