package secretsmanager

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyrot/keyrot"
)

var _ keyrot.FleetSecrets = (*Store)(nil)

// stateFromTags reads the records kept in the tags of a user's primary
// secret (everything but the stored keys themselves).
func stateFromTags(tags map[string]string) keyrot.SecretState {
	st := keyrot.SecretState{Exists: true}
	st.Generation, _ = strconv.Atoi(tags[tagGeneration])
	st.LastIntent, _ = strconv.Atoi(tags[tagLastIntent])
	st.FailingSince, _ = time.Parse(time.RFC3339, tags[tagFailingSince])
	st.PreviousKeyID = tags[tagPreviousKey]
	st.CurrentSince, _ = time.Parse(time.RFC3339, tags[tagCurrentSince])
	st.Timings, _ = keyrot.ParseTimings(tags[tagTimings]) // zero (told again) if missing or bad
	st.Inactive = map[string]time.Time{}
	st.Seen = map[string]time.Time{}
	st.Unreported = map[string]keyrot.EventKind{}
	st.Warned = map[keyrot.WarningKind]keyrot.WarnRecord{}
	st.Delivered = map[string]keyrot.Delivery{}
	for k, v := range tags {
		if target, ok := strings.CutPrefix(k, tagSync); ok {
			keyID, when, _ := strings.Cut(v, " ")
			d := keyrot.Delivery{KeyID: strings.TrimPrefix(keyID, "-")}
			d.FailingSince, _ = time.Parse(time.RFC3339, when) // zero if none
			st.Delivered[target] = d
		}
		if id, ok := strings.CutPrefix(k, tagInactive); ok {
			if at, err := time.Parse(time.RFC3339, v); err == nil {
				st.Inactive[id] = at
			}
		}
		if id, ok := strings.CutPrefix(k, tagSeen); ok {
			if at, err := time.Parse(time.RFC3339, v); err == nil {
				st.Seen[id] = at
			}
		}
		if id, ok := strings.CutPrefix(k, tagReport); ok {
			st.Unreported[id] = keyrot.EventKind(v)
		}
		if kind, ok := strings.CutPrefix(k, tagWarned); ok {
			keyID, when, _ := strings.Cut(v, " ")
			if at, err := time.Parse(time.RFC3339, when); err == nil {
				st.Warned[keyrot.WarningKind(kind)] = keyrot.WarnRecord{KeyID: strings.TrimPrefix(keyID, "-"), At: at}
			}
		}
	}
	return st
}

// Records lists every user's records from the tags of its primary secret,
// 100 secrets a ListSecrets call, without reading a secret value. Current
// names the key the pointer tags name (no CreateDate, no value); an
// unfinished rotation's intent is there, its pending key is not. Secrets
// scheduled for deletion, ring members other than 0 and secrets that are
// not keyrot's are left out (a user without a record is observed in full).
func (s *Store) Records(ctx context.Context) (map[string]keyrot.SecretState, error) {
	out := map[string]keyrot.SecretState{}
	err := s.eachPrimary(ctx, tagManaged, func(user string, tags map[string]string, e types.SecretListEntry) {
		if e.DeletedDate != nil {
			return
		}
		st := stateFromTags(tags)
		if id := tags[tagCurrentKey]; id != "" && strings.HasPrefix(tags[tagCurrentSecret], s.cfg.Prefix) {
			st.Current = &keyrot.StoredKey{KeyID: id, Generation: st.Generation, Secret: tags[tagCurrentSecret]}
		}
		if raw := tags[tagIntent]; raw != "" {
			intent, err := parseIntent(raw)
			if err != nil {
				intent = keyrot.Intent{Generation: -1} // malformed: a full observation reports it
			}
			st.Intent = &intent
		}
		out[user] = st
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachPrimary calls fn with the tags of every user's primary secret (ring
// member 0) under the prefix that carries tagKey, 100 secrets a ListSecrets
// call, without reading a secret value.
func (s *Store) eachPrimary(ctx context.Context, tagKey string, fn func(user string, tags map[string]string, e types.SecretListEntry)) error {
	p := sm.NewListSecretsPaginator(s.api, &sm.ListSecretsInput{MaxResults: aws.Int32(100), Filters: []types.Filter{
		{Key: types.FilterNameStringTypeName, Values: []string{s.cfg.Prefix}},
		{Key: types.FilterNameStringTypeTagKey, Values: []string{tagKey}},
	}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("secretsmanager: list secrets under %q: %w", s.cfg.Prefix, err)
		}
		for _, e := range page.SecretList {
			tags := tagMap(e.Tags)
			user := tags[tagUser]
			if tags[tagManaged] != "true" || user == "" || aws.ToString(e.Name) != s.SecretName(user, 0) {
				continue
			}
			fn(user, tags, e)
		}
	}
	return nil
}
