// Package secretsmanager implements keyrot.SecretStore on AWS Secrets Manager.
//
// Each managed user has a ring of secrets. Member 0 is named
// <prefix><user> and is the only one for production cadences; short
// cadences add <prefix><user>/1, /2, ... so that no secret is written more
// than about 72 times a day (Secrets Manager keeps every version younger
// than 24 hours and at most 100 versions). A rotation writes exactly one
// version, the new key as AWSPENDING of the next member; everything else is
// a label move (AWSCURRENT) or a tag on member 0:
//
//	keyrot:managed=true, keyrot:user, keyrot:member   on every member
//	keyrot:generation, keyrot:current-secret,
//	keyrot:current-key, keyrot:current-since         the current key's pointer
//	keyrot:timings = "<rotate> <deactivate> <late>"  what readers of it are given
//	keyrot:previous-key                              the key it replaced
//	keyrot:intent = "<generation> <member> <time>"   written before CreateAccessKey
//	keyrot:last-intent = <generation>                 with it; never reused after
//	keyrot:inactive:<key id> = <time>                written before UpdateAccessKey
//	keyrot:seen:<key id> = <time>                    a foreign key first seen
//	keyrot:report:<key id> = <event kind>            an event not yet told, written
//	                                                 with the change it reports
//	keyrot:failing-since = <time>                    a reported failure incident
//	keyrot:warned:<warning> = "<key id> <time>"      a standing warning already sent
//	keyrot:sync:<target> = "<key id>[ <time>]"        the key a delivery target
//	                                                 confirmed, and when a reported
//	                                                 failure to deliver began
//
// IAM user names cannot contain "/", so member names never collide with
// another user's secret. Readers follow keyrot:current-secret on member 0.
package secretsmanager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot"
)

// API is the part of the Secrets Manager client keyrot uses.
type API interface {
	CreateSecret(ctx context.Context, in *sm.CreateSecretInput, optFns ...func(*sm.Options)) (*sm.CreateSecretOutput, error)
	DescribeSecret(ctx context.Context, in *sm.DescribeSecretInput, optFns ...func(*sm.Options)) (*sm.DescribeSecretOutput, error)
	GetSecretValue(ctx context.Context, in *sm.GetSecretValueInput, optFns ...func(*sm.Options)) (*sm.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *sm.PutSecretValueInput, optFns ...func(*sm.Options)) (*sm.PutSecretValueOutput, error)
	UpdateSecretVersionStage(ctx context.Context, in *sm.UpdateSecretVersionStageInput, optFns ...func(*sm.Options)) (*sm.UpdateSecretVersionStageOutput, error)
	TagResource(ctx context.Context, in *sm.TagResourceInput, optFns ...func(*sm.Options)) (*sm.TagResourceOutput, error)
	UntagResource(ctx context.Context, in *sm.UntagResourceInput, optFns ...func(*sm.Options)) (*sm.UntagResourceOutput, error)
	PutResourcePolicy(ctx context.Context, in *sm.PutResourcePolicyInput, optFns ...func(*sm.Options)) (*sm.PutResourcePolicyOutput, error)
	ListSecrets(ctx context.Context, in *sm.ListSecretsInput, optFns ...func(*sm.Options)) (*sm.ListSecretsOutput, error)
	BatchGetSecretValue(ctx context.Context, in *sm.BatchGetSecretValueInput, optFns ...func(*sm.Options)) (*sm.BatchGetSecretValueOutput, error)
}

// Tag names, all on member 0 unless noted.
const (
	tagManaged       = "keyrot:managed" // every member
	tagUser          = "keyrot:user"    // every member
	tagMember        = "keyrot:member"  // every member
	tagGeneration    = "keyrot:generation"
	tagCurrentSecret = "keyrot:current-secret"
	tagCurrentKey    = "keyrot:current-key"
	tagCurrentSince  = "keyrot:current-since"
	tagPreviousKey   = "keyrot:previous-key"
	tagTimings       = "keyrot:timings"
	tagIntent        = "keyrot:intent"
	tagLastIntent    = "keyrot:last-intent"
	tagInactive      = "keyrot:inactive:" // + key id
	tagSeen          = "keyrot:seen:"     // + key id
	tagReport        = "keyrot:report:"   // + key id = event kind
	tagFailingSince  = "keyrot:failing-since"
	tagWarned        = "keyrot:warned:" // + warning kind = "<key id or -> <time>"
	tagSync          = "keyrot:sync:"   // + target id = "<key id or -> [<failing since>]"
)

const (
	stageCurrent  = "AWSCURRENT"
	stagePending  = "AWSPENDING"
	stagePrevious = "AWSPREVIOUS"
)

// Config says where and how the secrets are kept.
type Config struct {
	// Prefix is prepended to the user name (default "iam-key-rotation/").
	Prefix string
	// KMSKeyID encrypts the secrets ("" for the account's aws/secretsmanager key).
	KMSKeyID string
}

var _ keyrot.SecretStore = (*Store)(nil)

// Store keeps keys in Secrets Manager.
type Store struct {
	api API
	cfg Config
}

// New returns a Store.
func New(api API, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "iam-key-rotation/"
	}
	return &Store{api: api, cfg: cfg}
}

// SecretName is the name of a user's ring member i (0 is the primary secret).
func (s *Store) SecretName(user string, i int) string {
	if i == 0 {
		return s.cfg.Prefix + user
	}
	return s.cfg.Prefix + user + "/" + strconv.Itoa(i)
}

// secretValue is the JSON kept in each version: the fields other tools
// (external-secrets, the AWS CLI) expect, plus the generation.
type secretValue struct {
	UserName        string
	AccessKeyId     string //nolint:revive // AWS's own spelling, kept for other tools.
	SecretAccessKey string
	CreateDate      time.Time
	Generation      int `json:",omitempty"`
}

// Load observes the user's ring: the pointer tags on member 0, the current
// key behind them, and the pending key of an unfinished rotation.
func (s *Store) Load(ctx context.Context, user string) (keyrot.SecretState, error) {
	var st keyrot.SecretState
	primary := s.SecretName(user, 0)
	desc, err := s.api.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(primary)})
	if isCode(err, "ResourceNotFoundException") {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("secretsmanager: describe secret %q: %w", primary, err)
	}
	if desc.DeletedDate != nil {
		return st, fmt.Errorf("secretsmanager: secret %q is scheduled for deletion; restore it (aws secretsmanager restore-secret) or delete it for good", primary)
	}
	tags := tagMap(desc.Tags)
	if tags[tagUser] != user {
		return st, fmt.Errorf("secretsmanager: secret %q exists but is not keyrot's secret for user %q (tag %s); rename it or choose another secrets.prefix", primary, user, tagUser)
	}
	st = stateFromTags(tags)
	if name := tags[tagCurrentSecret]; name != "" {
		cur, err := s.readVersion(ctx, name, stageCurrent)
		if err != nil && !errors.Is(err, keyrot.ErrSecretNotFound) {
			return st, err
		}
		// A promotion interrupted between the label move and the tags
		// leaves AWSCURRENT one generation ahead of the pointer (with a
		// ring of one): the pointer's key is then AWSPREVIOUS.
		if cur != nil && cur.Generation != st.Generation {
			if prev, err := s.readVersion(ctx, name, stagePrevious); err == nil && prev.Generation == st.Generation {
				cur = prev
			}
		}
		st.Current = cur
	}
	if raw := tags[tagIntent]; raw != "" {
		intent, err := parseIntent(raw)
		if err != nil {
			return st, fmt.Errorf("secretsmanager: secret %q tag %s: %w", primary, tagIntent, err)
		}
		st.Intent = &intent
		pending, err := s.readVersion(ctx, s.SecretName(user, intent.Member), stagePending)
		if err != nil && !errors.Is(err, keyrot.ErrSecretNotFound) {
			return st, err
		}
		if pending != nil && pending.Generation == intent.Generation {
			st.Pending = pending
		}
	}
	return st, nil
}

func (s *Store) readVersion(ctx context.Context, name, stage string) (*keyrot.StoredKey, error) {
	out, err := s.api.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String(name), VersionStage: aws.String(stage)})
	if isCode(err, "ResourceNotFoundException") {
		return nil, fmt.Errorf("secretsmanager: %s of %q: %w", stage, name, keyrot.ErrSecretNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("secretsmanager: read %s of %q: %w", stage, name, err)
	}
	var v secretValue
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v); err != nil || v.AccessKeyId == "" {
		// Never include the value: it may be a secret of some other shape.
		return nil, fmt.Errorf("secretsmanager: %s of %q is not a keyrot access key (want JSON with UserName, AccessKeyId, SecretAccessKey, CreateDate)", stage, name)
	}
	return &keyrot.StoredKey{
		KeyID: v.AccessKeyId, CreateDate: v.CreateDate, Generation: v.Generation,
		Secret: name, VersionID: aws.ToString(out.VersionId),
		Creds: keyrot.Credentials{UserName: v.UserName, AccessKeyID: v.AccessKeyId, SecretAccessKey: v.SecretAccessKey, CreateDate: v.CreateDate, Generation: v.Generation},
	}, nil
}

func parseIntent(raw string) (keyrot.Intent, error) {
	var in keyrot.Intent
	f := strings.Fields(raw)
	if len(f) != 3 {
		return in, fmt.Errorf("malformed intent %q", raw)
	}
	var err1, err2, err3 error
	in.Generation, err1 = strconv.Atoi(f[0])
	in.Member, err2 = strconv.Atoi(f[1])
	in.At, err3 = time.Parse(time.RFC3339, f[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return in, fmt.Errorf("malformed intent %q: %w", raw, err)
	}
	return in, nil
}

// Init makes sure the user's primary secret exists.
func (s *Store) Init(ctx context.Context, user keyrot.User) error {
	return s.ensureMember(ctx, user, 0)
}

// BeginCreate makes sure the ring member exists and records the intent,
// and its generation as the last one begun, in one write.
func (s *Store) BeginCreate(ctx context.Context, user keyrot.User, intent keyrot.Intent) error {
	if err := s.ensureMember(ctx, user, 0); err != nil {
		return err
	}
	if intent.Member != 0 {
		if err := s.ensureMember(ctx, user, intent.Member); err != nil {
			return err
		}
	}
	value := fmt.Sprintf("%d %d %s", intent.Generation, intent.Member, intent.At.UTC().Format(time.RFC3339))
	return s.tag(ctx, s.SecretName(user.Name, 0), map[string]string{tagIntent: value, tagLastIntent: strconv.Itoa(intent.Generation)})
}

// ensureMember creates ring member i if needed and (re)applies the resource
// policy that lets the IAM user read its own key.
func (s *Store) ensureMember(ctx context.Context, user keyrot.User, i int) error {
	name := s.SecretName(user.Name, i)
	in := &sm.CreateSecretInput{
		Name:        aws.String(name),
		Description: aws.String(fmt.Sprintf("Current AWS access key of IAM user %s, rotated by keyrot. Do not edit.", user.Name)),
		Tags: []types.Tag{
			{Key: aws.String(tagManaged), Value: aws.String("true")},
			{Key: aws.String(tagUser), Value: aws.String(user.Name)},
			{Key: aws.String(tagMember), Value: aws.String(strconv.Itoa(i))},
		},
	}
	if s.cfg.KMSKeyID != "" {
		in.KmsKeyId = aws.String(s.cfg.KMSKeyID)
	}
	_, err := s.api.CreateSecret(ctx, in)
	switch {
	case isCode(err, "ResourceExistsException"):
		desc, derr := s.api.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(name)})
		if derr != nil {
			return fmt.Errorf("secretsmanager: describe secret %q: %w", name, derr)
		}
		if tagMap(desc.Tags)[tagUser] != user.Name {
			return fmt.Errorf("secretsmanager: secret %q exists but is not keyrot's secret for user %q; rename it or choose another secrets.prefix", name, user.Name)
		}
	case err != nil:
		return fmt.Errorf("secretsmanager: create secret %q: %w", name, err)
	}
	if user.ARN == "" {
		return nil
	}
	policy, err := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Sid":       "KeyrotUserReadsOwnKey",
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": user.ARN},
			"Action":    []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
			"Resource":  "*",
		}},
	})
	if err != nil {
		return fmt.Errorf("secretsmanager: resource policy for %q: %w", name, err)
	}
	if _, err := s.api.PutResourcePolicy(ctx, &sm.PutResourcePolicyInput{SecretId: aws.String(name), ResourcePolicy: aws.String(string(policy)), BlockPublicPolicy: aws.Bool(true)}); err != nil {
		return fmt.Errorf("secretsmanager: put resource policy on %q: %w", name, err)
	}
	return nil
}

// Token is the ClientRequestToken of a user's generation: the same for every
// keyrot, so two of them rotating one user at once collide on the version
// instead of both succeeding.
func Token(user string, generation int) string {
	sum := sha256.Sum256([]byte(user))
	return fmt.Sprintf("keyrot-%s-%010d", hex.EncodeToString(sum[:12]), generation)
}

// StorePending writes creds as AWSPENDING of the intent's member.
func (s *Store) StorePending(ctx context.Context, intent keyrot.Intent, creds keyrot.Credentials) (keyrot.StoredKey, error) {
	name := s.SecretName(creds.UserName, intent.Member)
	body, err := json.Marshal(secretValue{
		UserName: creds.UserName, AccessKeyId: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey,
		CreateDate: creds.CreateDate.UTC(), Generation: intent.Generation,
	})
	if err != nil {
		return keyrot.StoredKey{}, fmt.Errorf("secretsmanager: encode key %s: %w", creds.AccessKeyID, err)
	}
	token := Token(creds.UserName, intent.Generation)
	out, err := s.api.PutSecretValue(ctx, &sm.PutSecretValueInput{
		SecretId: aws.String(name), ClientRequestToken: aws.String(token),
		SecretString: aws.String(string(body)), VersionStages: []string{stagePending},
	})
	if isCode(err, "ResourceExistsException") {
		return keyrot.StoredKey{}, fmt.Errorf("secretsmanager: store key %s in %q: generation %d already holds another key: %w", creds.AccessKeyID, name, intent.Generation, keyrot.ErrConflict)
	}
	if err != nil {
		return keyrot.StoredKey{}, fmt.Errorf("secretsmanager: store key %s in %q: %w", creds.AccessKeyID, name, err)
	}
	creds.Generation = intent.Generation
	return keyrot.StoredKey{KeyID: creds.AccessKeyID, CreateDate: creds.CreateDate, Generation: intent.Generation,
		Secret: name, VersionID: aws.ToString(out.VersionId), Creds: creds}, nil
}

// Promote moves AWSCURRENT to the pending version, then points member 0 at
// it. Each step is safe to repeat.
func (s *Store) Promote(ctx context.Context, user string, pending keyrot.StoredKey, previousKeyID string, since time.Time, timings keyrot.Timings) error {
	desc, err := s.api.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(pending.Secret)})
	if err != nil {
		return fmt.Errorf("secretsmanager: describe secret %q: %w", pending.Secret, err)
	}
	currentVersion, pendingLabelled := "", false
	for v, stages := range desc.VersionIdsToStages {
		for _, st := range stages {
			switch {
			case st == stageCurrent:
				currentVersion = v
			case st == stagePending && v == pending.VersionID:
				pendingLabelled = true
			}
		}
	}
	if currentVersion != pending.VersionID {
		in := &sm.UpdateSecretVersionStageInput{SecretId: aws.String(pending.Secret), VersionStage: aws.String(stageCurrent), MoveToVersionId: aws.String(pending.VersionID)}
		if currentVersion != "" {
			in.RemoveFromVersionId = aws.String(currentVersion)
		}
		if _, err := s.api.UpdateSecretVersionStage(ctx, in); err != nil {
			return fmt.Errorf("secretsmanager: move AWSCURRENT of %q to key %s: %w", pending.Secret, pending.KeyID, err)
		}
	}
	tags := map[string]string{
		tagGeneration:             strconv.Itoa(pending.Generation),
		tagCurrentSecret:          pending.Secret,
		tagCurrentKey:             pending.KeyID,
		tagCurrentSince:           stampUp(since),
		tagTimings:                timings.String(),
		tagReport + pending.KeyID: string(keyrot.EventKeyCreated),
	}
	if previousKeyID != "" {
		tags[tagPreviousKey] = previousKeyID
	}
	primary := s.SecretName(user, 0)
	if err := s.tag(ctx, primary, tags); err != nil {
		return err
	}
	if err := s.untag(ctx, primary, tagIntent); err != nil {
		return err
	}
	if pendingLabelled {
		if _, err := s.api.UpdateSecretVersionStage(ctx, &sm.UpdateSecretVersionStageInput{SecretId: aws.String(pending.Secret), VersionStage: aws.String(stagePending), RemoveFromVersionId: aws.String(pending.VersionID)}); err != nil {
			return fmt.Errorf("secretsmanager: clear AWSPENDING of %q: %w", pending.Secret, err)
		}
	}
	return nil
}

// ClearIntent drops the intent of an unfinished rotation.
func (s *Store) ClearIntent(ctx context.Context, user string) error {
	return s.untag(ctx, s.SecretName(user, 0), tagIntent)
}

// MarkInactive records when keyID was deactivated.
func (s *Store) MarkInactive(ctx context.Context, user, keyID string, at time.Time) error {
	return s.tag(ctx, s.SecretName(user, 0), map[string]string{tagInactive + keyID: stampUp(at)})
}

// SetTimings replaces the timings readers of the current key are given.
func (s *Store) SetTimings(ctx context.Context, user string, timings keyrot.Timings) error {
	return s.tag(ctx, s.SecretName(user, 0), map[string]string{tagTimings: timings.String()})
}

// MarkDeactivating records when keyID is deactivated and that its
// deactivation is still to be told, in one write.
func (s *Store) MarkDeactivating(ctx context.Context, user, keyID string, at time.Time) error {
	return s.tag(ctx, s.SecretName(user, 0), map[string]string{
		tagInactive + keyID: stampUp(at),
		tagReport + keyID:   string(keyrot.EventKeyDeactivated),
	})
}

// MarkSeen records when keyrot first saw a key it did not create.
func (s *Store) MarkSeen(ctx context.Context, user, keyID string, at time.Time) error {
	return s.tag(ctx, s.SecretName(user, 0), map[string]string{tagSeen + keyID: stampUp(at)})
}

// Reported drops the mark of keyID's event once it is told.
func (s *Store) Reported(ctx context.Context, user, keyID string) error {
	return s.untag(ctx, s.SecretName(user, 0), tagReport+keyID)
}

// MarkFailing records a reported failure incident; a zero since drops it.
func (s *Store) MarkFailing(ctx context.Context, user string, since time.Time) error {
	if since.IsZero() {
		return s.untag(ctx, s.SecretName(user, 0), tagFailingSince)
	}
	return s.tag(ctx, s.SecretName(user, 0), map[string]string{tagFailingSince: since.UTC().Format(time.RFC3339)})
}

// MarkWarned records that a standing warning was sent.
func (s *Store) MarkWarned(ctx context.Context, user string, kind keyrot.WarningKind, keyID string, at time.Time) error {
	if keyID == "" {
		keyID = "-"
	}
	return s.tag(ctx, s.SecretName(user, 0), map[string]string{tagWarned + string(kind): keyID + " " + at.UTC().Format(time.RFC3339)})
}

// ClearWarned drops the record of a warning whose condition has ended.
func (s *Store) ClearWarned(ctx context.Context, user string, kind keyrot.WarningKind) error {
	return s.untag(ctx, s.SecretName(user, 0), tagWarned+string(kind))
}

// MarkDelivery records the key a delivery target confirmed and a reported
// failure incident, if any.
func (s *Store) MarkDelivery(ctx context.Context, user, target string, d keyrot.Delivery) error {
	value := d.KeyID
	if value == "" {
		value = "-"
	}
	if !d.FailingSince.IsZero() {
		value += " " + d.FailingSince.UTC().Format(time.RFC3339)
	}
	return s.tag(ctx, s.SecretName(user, 0), map[string]string{tagSync + target: value})
}

// Forget drops every record of a deleted key.
func (s *Store) Forget(ctx context.Context, user, keyID string) error {
	return s.untag(ctx, s.SecretName(user, 0), tagInactive+keyID, tagSeen+keyID, tagReport+keyID)
}

// Current returns the user's current credentials.
func (s *Store) Current(ctx context.Context, user string) (keyrot.Credentials, error) {
	primary := s.SecretName(user, 0)
	desc, err := s.api.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(primary)})
	if isCode(err, "ResourceNotFoundException") {
		return keyrot.Credentials{}, fmt.Errorf("secretsmanager: no secret %q for user %q: %w", primary, user, keyrot.ErrSecretNotFound)
	}
	if err != nil {
		return keyrot.Credentials{}, fmt.Errorf("secretsmanager: describe secret %q: %w", primary, err)
	}
	tags := tagMap(desc.Tags)
	name := tags[tagCurrentSecret]
	if name == "" {
		return keyrot.Credentials{}, fmt.Errorf("secretsmanager: user %q has no current key yet: %w", user, keyrot.ErrSecretNotFound)
	}
	cur, err := s.readVersion(ctx, name, stageCurrent)
	if err != nil {
		return keyrot.Credentials{}, err
	}
	creds := cur.Creds
	creds.CurrentSince, _ = time.Parse(time.RFC3339, tags[tagCurrentSince])
	creds.Timings, _ = keyrot.ParseTimings(tags[tagTimings])
	if creds.AccessKeyID != tags[tagCurrentKey] {
		// Mid-promotion: the pointer still names the old key, which is
		// still active; serve the one the pointer names.
		if prev, err := s.readVersion(ctx, name, stagePrevious); err == nil && prev.KeyID == tags[tagCurrentKey] {
			creds = prev.Creds
		}
	}
	return creds, nil
}

// Value returns the AWSCURRENT string of a secret outside the key rings,
// such as the one api.keys_secret names. A missing secret is
// keyrot.ErrSecretNotFound. Errors never include the value.
func (s *Store) Value(ctx context.Context, name string) (string, error) {
	out, err := s.api.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String(name)})
	if isCode(err, "ResourceNotFoundException") {
		return "", fmt.Errorf("secretsmanager: read secret %q: %w (%w)", name, keyrot.ErrSecretNotFound, err)
	}
	if err != nil {
		return "", fmt.Errorf("secretsmanager: read secret %q: %w", name, err)
	}
	return aws.ToString(out.SecretString), nil
}

// PutValue writes value as the new AWSCURRENT string of a secret outside
// the key rings (keyrot apikey writes api.keys_secret), creating the
// secret with description (and the configured KMS key) when there is none.
// Errors never include the value.
func (s *Store) PutValue(ctx context.Context, name, value, description string) error {
	_, err := s.api.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
	if isCode(err, "ResourceNotFoundException") {
		in := &sm.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value), Description: aws.String(description)}
		if s.cfg.KMSKeyID != "" {
			in.KmsKeyId = aws.String(s.cfg.KMSKeyID)
		}
		_, err = s.api.CreateSecret(ctx, in)
	}
	if err != nil {
		return fmt.Errorf("secretsmanager: write secret %q: %w", name, err)
	}
	return nil
}

// Pointers lists the current-key pointer of every user under the prefix
// from member 0's tags, with ListSecrets (a page per 100 users) and no
// secret value read: the cheap check for promotions the API cache makes
// every few seconds. A user whose ring has no current key yet is left out.
func (s *Store) Pointers(ctx context.Context) ([]keyrot.KeyPointer, error) {
	var out []keyrot.KeyPointer
	err := s.eachPrimary(ctx, tagCurrentSecret, func(user string, tags map[string]string, _ types.SecretListEntry) {
		name := tags[tagCurrentSecret]
		if !strings.HasPrefix(name, s.cfg.Prefix) {
			return
		}
		ptr := keyrot.KeyPointer{UserName: user, Secret: name, KeyID: tags[tagCurrentKey]}
		ptr.Generation, _ = strconv.Atoi(tags[tagGeneration])
		ptr.Since, _ = time.Parse(time.RFC3339, tags[tagCurrentSince])
		ptr.Timings, _ = keyrot.ParseTimings(tags[tagTimings])
		out = append(out, ptr)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// batchGetMax is how many secrets one BatchGetSecretValue may name.
const batchGetMax = 20

// ReadCurrent reads the keys ptrs point at, 20 to a BatchGetSecretValue.
// A user whose key could not be read is in failed with the reason, never in
// creds: an error entry of the batch (a denied KMS key, a member scheduled
// for deletion), a batch that failed whole (a throttle), or a value that is
// not the key the pointer names and is not its AWSPREVIOUS either (a
// promotion under way with a ring of one is read from AWSPREVIOUS).
func (s *Store) ReadCurrent(ctx context.Context, ptrs []keyrot.KeyPointer) (creds []keyrot.Credentials, failed map[string]error) {
	failed = map[string]error{}
	byName := make(map[string]keyrot.KeyPointer, len(ptrs))
	names := make([]string, 0, len(ptrs))
	for _, p := range ptrs {
		byName[p.Secret] = p
		names = append(names, p.Secret)
	}
	for start := 0; start < len(names); start += batchGetMax {
		batch := names[start:min(start+batchGetMax, len(names))]
		res, err := s.api.BatchGetSecretValue(ctx, &sm.BatchGetSecretValueInput{SecretIdList: batch})
		if err != nil {
			for _, name := range batch {
				failed[byName[name].UserName] = fmt.Errorf("secretsmanager: batch get %d secrets: %w", len(batch), err)
			}
			continue
		}
		read := map[string]bool{}
		for _, v := range res.SecretValues {
			name := aws.ToString(v.Name)
			p, ok := byName[name]
			if !ok {
				continue
			}
			read[name] = true
			c, err := s.pointedValue(ctx, p, aws.ToString(v.SecretString))
			if err != nil {
				failed[p.UserName] = err
				continue
			}
			creds = append(creds, c)
		}
		for _, e := range res.Errors {
			if p, ok := byName[aws.ToString(e.SecretId)]; ok && !read[p.Secret] {
				read[p.Secret] = true
				failed[p.UserName] = fmt.Errorf("secretsmanager: read %q: %s: %s", p.Secret, aws.ToString(e.ErrorCode), aws.ToString(e.Message))
			}
		}
		for _, name := range batch {
			if !read[name] {
				failed[byName[name].UserName] = fmt.Errorf("secretsmanager: read %q: missing from the BatchGetSecretValue response", name)
			}
		}
	}
	return creds, failed
}

// pointedValue decodes the AWSCURRENT value of p's secret and checks that
// it is the key p names, falling back to AWSPREVIOUS while a promotion with
// a ring of one has moved the label but not yet the tags.
func (s *Store) pointedValue(ctx context.Context, p keyrot.KeyPointer, value string) (keyrot.Credentials, error) {
	var sv secretValue
	if json.Unmarshal([]byte(value), &sv) != nil || sv.AccessKeyId == "" {
		// Never include the value: it may be a secret of some other shape.
		return keyrot.Credentials{}, fmt.Errorf("secretsmanager: AWSCURRENT of %q is not a keyrot access key", p.Secret)
	}
	c := keyrot.Credentials{UserName: sv.UserName, AccessKeyID: sv.AccessKeyId, SecretAccessKey: sv.SecretAccessKey,
		CreateDate: sv.CreateDate, Generation: sv.Generation}
	if c.AccessKeyID != p.KeyID {
		prev, err := s.readVersion(ctx, p.Secret, stagePrevious)
		if err != nil || prev.KeyID != p.KeyID {
			return keyrot.Credentials{}, fmt.Errorf("secretsmanager: %q holds key %s, not %s that its pointer names: a promotion is under way", p.Secret, c.AccessKeyID, p.KeyID)
		}
		c = prev.Creds
	}
	if c.UserName != p.UserName {
		return keyrot.Credentials{}, fmt.Errorf("secretsmanager: %q holds a key of user %q, not %q", p.Secret, c.UserName, p.UserName)
	}
	c.CurrentSince, c.Timings = p.Since, p.Timings
	return c, nil
}

func (s *Store) tag(ctx context.Context, name string, tags map[string]string) error {
	in := &sm.TagResourceInput{SecretId: aws.String(name)}
	for k, v := range tags {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := s.api.TagResource(ctx, in); err != nil {
		return fmt.Errorf("secretsmanager: tag %q: %w", name, err)
	}
	return nil
}

func (s *Store) untag(ctx context.Context, name string, keys ...string) error {
	if _, err := s.api.UntagResource(ctx, &sm.UntagResourceInput{SecretId: aws.String(name), TagKeys: keys}); err != nil {
		return fmt.Errorf("secretsmanager: untag %q: %w", name, err)
	}
	return nil
}

// stampUp writes a time that starts a wait (a deactivation before the
// deletion, a first sighting before the deactivation) in whole seconds,
// rounded up, so that the wait is never cut short by the rounding.
func stampUp(t time.Time) string {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		t = r.Add(time.Second)
	}
	return t.UTC().Format(time.RFC3339)
}

func tagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func isCode(err error, code string) bool {
	var apiErr smithy.APIError
	return err != nil && errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}
