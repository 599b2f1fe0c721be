package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// pointer is what the user's secret says about its current key (the tags
// keyrot keeps on member 0, docs/operations.md "State on the secret").
type pointer struct {
	key          string // keyrot:current-key
	generation   int    // keyrot:generation
	failingSince string // keyrot:failing-since: an emailed incident still open
}

// readPointer reads the user's pointer; a user without a secret yet has
// none.
func readPointer(ctx context.Context, sm *secretsmanager.Client, user string) (pointer, error) {
	out, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(prefix + user)})
	var notFound *smtypes.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return pointer{}, nil
	}
	if err != nil {
		return pointer{}, err
	}
	var p pointer
	for _, t := range out.Tags {
		switch aws.ToString(t.Key) {
		case "keyrot:current-key":
			p.key = aws.ToString(t.Value)
		case "keyrot:generation":
			p.generation, _ = strconv.Atoi(aws.ToString(t.Value))
		case "keyrot:failing-since":
			p.failingSince = aws.ToString(t.Value)
		}
	}
	return p, nil
}

// keyLife is what the watcher saw of one access key. Times are bounds: a
// round starts before and ends after the reads it makes, so "last seen
// active" is a round's start and "first seen inactive" a round's end, and
// a rule is broken only when these bounds prove it.
type keyLife struct {
	id, user      string
	unmanaged     bool
	created       time.Time // IAM's CreateDate
	lastPresent   time.Time // start of the last round that listed it
	firstAbsent   time.Time // end of the first round that did not
	lastActive    time.Time // start of the last round that saw it Active
	firstInactive time.Time // end of the first round that saw it Inactive
	wasCurrent    bool
	lastCurrent   time.Time // start of the last round whose pointer named it
	demoted       time.Time // end of the first round whose pointer named another key
}

// userWatch is the watcher's record of one user.
type userWatch struct {
	name        string
	keys        map[string]*keyLife
	current     string
	promotions  int // distinct current keys seen: the user's completed rotations
	healPromos  int // promotions seen while healing
	generation  int
	deactivated int // keys seen going from Active to Inactive
	deleted     int // keys seen disappearing
	rounds      int
	lastOK      time.Time
}

// watcher checks the invariants every second, one goroutine per user.
type watcher struct {
	w         *world
	mu        sync.Mutex
	users     map[string]*userWatch
	healStart time.Time
	issues    map[string]string // violation key -> description (each counted once)
	lost      map[string]bool   // keys keyrot handed out that IAM lost
	stsChecks int
}

func newWatcher(w *world) *watcher {
	wa := &watcher{w: w, users: map[string]*userWatch{}, issues: map[string]string{}, lost: map[string]bool{}}
	for _, u := range w.users {
		wa.users[u] = &userWatch{name: u, keys: map[string]*keyLife{}}
	}
	return wa
}

func (wa *watcher) markHeal(t time.Time) {
	wa.mu.Lock()
	wa.healStart = t
	wa.mu.Unlock()
}

func (wa *watcher) violate(key, format string, args ...any) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	if _, seen := wa.issues[key]; !seen {
		msg := fmt.Sprintf(format, args...)
		wa.issues[key] = time.Now().UTC().Format("15:04:05 ") + msg
		fmt.Printf("chaos: VIOLATION %s\n", msg)
	}
}

func (wa *watcher) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, u := range wa.w.users {
		wg.Go(func() {
			for ctx.Err() == nil {
				wa.round(ctx, u)
				sleep(ctx, time.Second)
			}
		})
	}
	wg.Wait()
}

// round reads the user's pointer, then its keys, and checks: at most two
// keys; the current key exists, is Active and STS accepts it; a current key
// is deactivated no sooner than deactivate_after after its successor became
// current; a key is deleted no sooner than delete_after after it became
// Inactive.
func (wa *watcher) round(ctx context.Context, user string) bool {
	o := wa.w.o
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	ptr, err := readPointer(rctx, wa.w.sm, user)
	if err != nil {
		return false
	}
	out, err := wa.w.iam.ListAccessKeys(rctx, &iam.ListAccessKeysInput{UserName: aws.String(user)})
	if err != nil {
		return false
	}
	end := time.Now()

	wa.mu.Lock()
	uw := wa.users[user]
	healing := !wa.healStart.IsZero()
	uw.rounds++
	present := map[string]string{}
	for _, k := range out.AccessKeyMetadata {
		present[aws.ToString(k.AccessKeyId)] = string(k.Status)
	}
	for id, status := range present {
		kl := uw.keys[id]
		if kl == nil {
			wa.w.mu.Lock()
			_, unmanaged := wa.w.unmanaged[id]
			wa.w.mu.Unlock()
			kl = &keyLife{id: id, user: user, unmanaged: unmanaged}
			for _, k := range out.AccessKeyMetadata {
				if aws.ToString(k.AccessKeyId) == id {
					kl.created = aws.ToTime(k.CreateDate)
				}
			}
			uw.keys[id] = kl
		}
		kl.lastPresent = start
		if status == "Active" {
			kl.lastActive = start
		} else if kl.firstInactive.IsZero() {
			kl.firstInactive = end
			if !kl.lastActive.IsZero() {
				uw.deactivated++
			}
			// A key the pointer still names is the current key: checked below.
			if kl.wasCurrent && ptr.key != id && end.Sub(kl.lastCurrent) < o.deactivateAfter {
				defer wa.violate("early-deactivate:"+id, "%s: key %s deactivated at most %s after its successor became current (deactivate_after %s)",
					user, id, end.Sub(kl.lastCurrent).Round(time.Millisecond), o.deactivateAfter)
			}
		}
	}
	for id, kl := range uw.keys {
		if _, ok := present[id]; ok || !kl.firstAbsent.IsZero() {
			continue
		}
		kl.firstAbsent = end
		uw.deleted++
		if inactiveFor := end.Sub(kl.lastActive); !kl.lastActive.IsZero() && inactiveFor < o.deleteAfter {
			defer wa.violate("early-delete:"+id, "%s: key %s deleted at most %s after it was last seen Active (delete_after %s)",
				user, id, inactiveFor.Round(time.Millisecond), o.deleteAfter)
		}
		if id == ptr.key {
			wa.lost[id] = true
			defer wa.violate("lost:"+id, "%s: the current key %s is gone from IAM", user, id)
		}
	}
	if len(present) > 2 {
		defer wa.violate(fmt.Sprintf("keys>2:%s:%d", user, uw.rounds), "%s has %d access keys", user, len(present))
	}
	uw.generation = ptr.generation
	if ptr.key != "" {
		if kl := uw.keys[ptr.key]; kl != nil {
			kl.wasCurrent = true
			kl.lastCurrent = start
		}
		if ptr.key != uw.current {
			if old := uw.keys[uw.current]; old != nil && old.demoted.IsZero() {
				old.demoted = end
			}
			uw.current = ptr.key
			uw.promotions++
			if healing {
				uw.healPromos++
			}
		}
	}
	status, listed := present[ptr.key]
	wa.mu.Unlock()

	if ptr.key == "" {
		return false
	}
	switch {
	case !listed:
		// Checked above when it disappears; a key never listed at all is
		// a pointer to nothing.
		if again, err := readPointer(rctx, wa.w.sm, user); err == nil && again.key == ptr.key {
			wa.violate("dangling:"+ptr.key, "%s: the secret names key %s, which IAM does not have", user, ptr.key)
		}
		return false
	case status != "Active":
		if again, err := readPointer(rctx, wa.w.sm, user); err == nil && again.key == ptr.key {
			wa.violate("inactive-current:"+ptr.key, "%s: the current key %s is %s", user, ptr.key, status)
		}
		return false
	}
	ok := wa.stsAccepts(rctx, user, ptr.key)
	if ok {
		wa.mu.Lock()
		uw.lastOK = time.Now()
		wa.mu.Unlock()
	}
	return ok
}

// stsAccepts signs GetCallerIdentity with the current key. A refusal of a
// key the pointer still names (keyrot made it current, so it must have
// verified it, past any propagation delay) is a violation; throttling,
// 5xx and an unreachable sandbox are not about the key.
func (wa *watcher) stsAccepts(ctx context.Context, user, keyID string) bool {
	secret, ok := wa.w.secret(ctx, keyID)
	if !ok {
		return false
	}
	client := sts.NewFromConfig(aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(wa.w.sandboxURL),
		Credentials:  credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		HTTPClient:   &http.Client{Timeout: 15 * time.Second},
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 8
				o.MaxBackoff = 300 * time.Millisecond
				o.RateLimiter = ratelimit.None
			})
		},
	})
	_, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	wa.mu.Lock()
	wa.stsChecks++
	wa.mu.Unlock()
	var apiErr smithy.APIError
	if err == nil {
		return true
	}
	if errors.As(err, &apiErr) && authCodes[apiErr.ErrorCode()] {
		if again, perr := readPointer(ctx, wa.w.sm, user); perr == nil && again.key == keyID {
			wa.violate("sts-refused:"+keyID, "%s: STS refused the current key %s: %s", user, keyID, apiErr.ErrorCode())
		}
	}
	return false
}

// figures are the watcher's counts so far.
func (wa *watcher) figures() (cycles, violations int) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	for _, uw := range wa.users {
		cycles += uw.promotions
	}
	return cycles, len(wa.issues)
}

// endChecks runs after the healing period, engine still running: every
// user has a working current key (STS, the API and --direct all agree),
// rotated while healing, has no failure incident open, and has no key left
// behind.
func (wa *watcher) endChecks(ctx context.Context, r *report, healStart time.Time) {
	o := wa.w.o
	for _, u := range wa.w.users {
		var ok bool
		for range 10 {
			if ok = wa.round(ctx, u); ok {
				break
			}
			sleep(ctx, time.Second)
		}
		wa.mu.Lock()
		uw := wa.users[u]
		current, healPromos := uw.current, uw.healPromos
		wa.mu.Unlock()
		if !ok {
			r.strand(u, "its current key does not work at the end")
			continue
		}
		if healPromos == 0 {
			r.strand(u, fmt.Sprintf("no rotation while healing (%s)", o.heal))
		}
		if id, err := wa.w.apiKeyID(ctx, u); err != nil || id != current {
			if again, _ := readPointer(ctx, wa.w.sm, u); again.key != current || err != nil || id != again.key {
				r.strand(u, fmt.Sprintf("the API serves %q (%v), the secret names %s", id, err, current))
			}
		}
		if id, err := wa.directKeyID(ctx, u); err != nil || id != current {
			if again, _ := readPointer(ctx, wa.w.sm, u); err != nil || id != again.key {
				r.strand(u, fmt.Sprintf("credentials --direct gives %q (%v), the secret names %s", id, err, current))
			}
		}
		if ptr, err := readPointer(ctx, wa.w.sm, u); err == nil && ptr.failingSince != "" {
			r.strand(u, "a failure incident is still open (keyrot:failing-since "+ptr.failingSince+")")
		}
	}

	// No key left behind: every key IAM still has is the current one, a
	// previous one within deactivate_after + delete_after of its
	// demotion, or a new one still within verify_timeout of its creation
	// (a rotation in progress).
	now := time.Now()
	slack := 3*o.resync + 10*time.Second
	wa.mu.Lock()
	defer wa.mu.Unlock()
	for _, u := range wa.w.users {
		uw := wa.users[u]
		ids := make([]string, 0, len(uw.keys))
		for id := range uw.keys {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			kl := uw.keys[id]
			if !kl.firstAbsent.IsZero() || id == uw.current {
				continue
			}
			var why string
			switch {
			case kl.unmanaged:
				why = "a key keyrot did not create, still there though keyrot adopts such keys"
			case kl.wasCurrent && now.Sub(kl.demoted) > o.deactivateAfter+o.deleteAfter+slack:
				why = fmt.Sprintf("a previous key, demoted %s ago", now.Sub(kl.demoted).Round(time.Second))
			case !kl.wasCurrent && now.Sub(kl.created) > o.verifyTimeout()+o.orphanGrace+o.deactivateAfter+o.deleteAfter+slack:
				why = fmt.Sprintf("a key never made current, created %s ago", now.Sub(kl.created).Round(time.Second))
			}
			if why != "" {
				r.lostKeys++
				r.detail("key left behind: %s %s (%s)", u, id, why)
			}
		}
	}
	for id := range wa.lost {
		r.lostKeys++
		r.detail("key lost: %s was current and IAM lost it", id)
	}
	for _, k := range slices.Sorted(maps.Keys(wa.issues)) {
		r.violation("%s", wa.issues[k])
	}
	var cycles, healPromos, deact, del, gen int
	for _, uw := range wa.users {
		cycles += uw.promotions
		healPromos += uw.healPromos
		deact += uw.deactivated
		del += uw.deleted
		gen += uw.generation
	}
	r.userCycles = cycles
	r.detail("watcher: %d keys made current (keyrot:generation sums to %d), %d deactivations and %d deletions seen, %d promotions while healing, %d STS checks of current keys",
		cycles, gen, deact, del, healPromos, wa.stsChecks)
}

// directKeyID runs `keyrot credentials USER --direct` and returns the key
// id it prints.
func (wa *watcher) directKeyID(ctx context.Context, user string) (string, error) {
	cmd := exec.CommandContext(ctx, wa.w.o.keyrot, "credentials", user, "--direct", "--format", "json")
	cmd.Env = append(wa.w.awsEnv(), "KEYROT_SECRET_PREFIX="+prefix)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("credentials --direct: %w", err)
	}
	var v struct{ AccessKeyId string } //nolint:revive // AWS's spelling
	if err := json.Unmarshal(out, &v); err != nil {
		return "", fmt.Errorf("credentials --direct output: %w", err)
	}
	return v.AccessKeyId, nil
}
