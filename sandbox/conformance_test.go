package sandbox_test

// The conformance suite runs the same sequences of AWS SDK calls against
// the sandbox and against moto_server, a second and independent emulator,
// and compares the facts keyrot depends on: status and error codes, the
// fields keyrot reads, label moves, idempotency, pagination, tags, resource
// policies, key status and last use, STS and SES. Where the two disagree,
// the case names the facts, the value each gives, and the entry of
// DIVERGENCES.md that says (from AWS's documentation) which one is right;
// the test then pins both values, so a change on either side is noticed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot/internal/testkit/mototest"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

var moto mototest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	moto.Close()
	os.Exit(code)
}

// backend is one implementation of the AWS APIs, with clients signed by its
// admin identity.
type backend struct {
	name string
	ns   string // prefix making this case's names unique on a shared server
	user func(id, secret string) aws.Config
	iam  *iam.Client
	sm   *secretsmanager.Client
	sts  *sts.Client
	ses  *sesv2.Client
	org  *organizations.Client
	sqs  *sqs.Client
	// member gives a member account of the backend's Organization.
	member func(ctx context.Context, t *testing.T, b *backend) orgMember
	// verifySender makes an address usable as a sender: moto requires a
	// verified identity, the sandbox treats every sender as verified (D5).
	verifySender func(ctx context.Context, addr string) error
}

func newBackend(name, ns string, cfg aws.Config, user func(id, secret string) aws.Config) *backend {
	return &backend{name: name, ns: ns, user: user,
		iam: iam.NewFromConfig(cfg), sm: secretsmanager.NewFromConfig(cfg), sts: sts.NewFromConfig(cfg), ses: sesv2.NewFromConfig(cfg),
		org: organizations.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg)}
}

// n makes a name unique to the case.
func (b *backend) n(s string) string { return b.ns + s }

// facts are what a case observed, in the order it observed them.
type facts struct {
	keys []string
	vals map[string]string
}

func (f *facts) set(key string, v any) {
	if f.vals == nil {
		f.vals = map[string]string{}
	}
	if _, ok := f.vals[key]; !ok {
		f.keys = append(f.keys, key)
	}
	f.vals[key] = fmt.Sprint(v)
}

// outcome records an error as "<code> <HTTP status>", or "ok".
func (f *facts) outcome(key string, err error) { f.set(key, outcome(err)) }

func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		// An error body in another protocol than the service's: the
		// SDK cannot read its code, and neither could keyrot.
		return fmt.Sprintf("undecodable error %d", status)
	}
	return fmt.Sprintf("%s %d", apiErr.ErrorCode(), status)
}

// knownEverywhere are divergences that show in every case that meets them:
// the moto value, the sandbox value and the DIVERGENCES.md entry.
var knownEverywhere = []divergence{
	{moto: "ResourceNotFoundException 404", sandbox: "ResourceNotFoundException 400", entry: "D1"},
}

// divergence is a fact the two backends are known to give differently.
type divergence struct {
	sandbox, moto string
	entry         string // the DIVERGENCES.md entry, e.g. "D1"
}

type conformanceCase struct {
	name     string
	run      func(ctx context.Context, t *testing.T, b *backend, f *facts)
	diverges map[string]divergence
}

// must fails the case on an error in its set-up.
func must[T any](t *testing.T, b *backend, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %s: %v", b.name, what, err)
		}
		return v
	}
}

func TestConformance(t *testing.T) {
	srv := moto.Get(t)
	cases := conformanceCases()
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("two cases named %q", c.name)
		}
		names[c.name] = true
	}
	t.Logf("%d conformance cases", len(cases))
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			ns := srv.Namespace()
			sb := sandboxtest.Start(t, sandbox.Options{Seed: int64(i + 1), MemberAccounts: 1})
			backends := []*backend{
				newBackend("sandbox", ns, sandboxtest.Config(t, sb), func(id, secret string) aws.Config {
					return sandboxtest.UserConfig(t, sb, id, secret)
				}),
				newBackend("moto", ns, srv.Config(), srv.UserConfig),
			}
			backends[0].verifySender = func(context.Context, string) error { return nil }
			backends[0].member, backends[1].member = sandboxMember, motoMember
			backends[1].verifySender = func(ctx context.Context, addr string) error {
				_, err := backends[1].ses.CreateEmailIdentity(ctx, &sesv2.CreateEmailIdentityInput{EmailIdentity: aws.String(addr)})
				return err
			}
			got := make([]facts, len(backends))
			for j, b := range backends {
				c.run(ctx, t, b, &got[j])
			}
			compareFacts(t, c, got[0], got[1])
		})
	}
}

// compareFacts fails on any fact the backends give differently, except the
// known divergences, which must still diverge exactly as recorded.
func compareFacts(t *testing.T, c conformanceCase, sb, mt facts) {
	t.Helper()
	keys := slices.Clone(sb.keys)
	for _, k := range mt.keys {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		t.Fatal("the case observed nothing")
	}
	for _, k := range keys {
		s, sok := sb.vals[k]
		m, mok := mt.vals[k]
		if d, known := c.diverges[k]; known {
			if s != d.sandbox || m != d.moto {
				t.Errorf("%s: recorded divergence %s no longer holds: sandbox %q (recorded %q), moto %q (recorded %q); update DIVERGENCES.md",
					k, d.entry, s, d.sandbox, m, d.moto)
			}
			continue
		}
		if slices.ContainsFunc(knownEverywhere, func(d divergence) bool { return d.sandbox == s && d.moto == m }) {
			continue
		}
		switch {
		case !sok || !mok:
			t.Errorf("%s: observed on one backend only (sandbox %q, moto %q)", k, s, m)
		case s != m:
			t.Errorf("%s: sandbox %q, moto %q", k, s, m)
		}
	}
	for k := range c.diverges {
		if !slices.Contains(keys, k) {
			t.Errorf("divergence %s names fact %q, which the case does not observe", c.diverges[k].entry, k)
		}
	}
}

// --- helpers shared by the cases -------------------------------------------

func (b *backend) createUser(ctx context.Context, t *testing.T, name, path string, tags ...string) *iamtypes.User {
	t.Helper()
	in := &iam.CreateUserInput{UserName: aws.String(b.n(name))}
	if path != "" {
		in.Path = aws.String(path)
	}
	for i := 0; i+1 < len(tags); i += 2 {
		in.Tags = append(in.Tags, iamtypes.Tag{Key: aws.String(tags[i]), Value: aws.String(tags[i+1])})
	}
	return must[*iam.CreateUserOutput](t, b, "create user")(b.iam.CreateUser(ctx, in)).User
}

func (b *backend) createKey(ctx context.Context, t *testing.T, user string) *iamtypes.AccessKey {
	t.Helper()
	return must[*iam.CreateAccessKeyOutput](t, b, "create key")(b.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(b.n(user))})).AccessKey
}

func (b *backend) setStatus(ctx context.Context, t *testing.T, user, id string, st iamtypes.StatusType) {
	t.Helper()
	must[*iam.UpdateAccessKeyOutput](t, b, "update key")(b.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(b.n(user)), AccessKeyId: aws.String(id), Status: st}))
}

// callerIdentity calls STS signed with key.
func (b *backend) callerIdentity(ctx context.Context, id, secret string) (*sts.GetCallerIdentityOutput, error) {
	return sts.NewFromConfig(b.user(id, secret), func(o *sts.Options) { o.RetryMaxAttempts = 1 }).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
}

func (b *backend) createSecret(ctx context.Context, t *testing.T, name string, value *string, tags ...string) *secretsmanager.CreateSecretOutput {
	t.Helper()
	in := &secretsmanager.CreateSecretInput{Name: aws.String(b.n(name)), SecretString: value}
	for i := 0; i+1 < len(tags); i += 2 {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(tags[i]), Value: aws.String(tags[i+1])})
	}
	return must[*secretsmanager.CreateSecretOutput](t, b, "create secret")(b.sm.CreateSecret(ctx, in))
}

func (b *backend) put(ctx context.Context, name, token, value string, stages ...string) (*secretsmanager.PutSecretValueOutput, error) {
	in := &secretsmanager.PutSecretValueInput{SecretId: aws.String(b.n(name)), SecretString: aws.String(value), VersionStages: stages}
	if token != "" {
		in.ClientRequestToken = aws.String(token)
	}
	return b.sm.PutSecretValue(ctx, in)
}

func (b *backend) mustPut(ctx context.Context, t *testing.T, name, token, value string, stages ...string) string {
	t.Helper()
	return aws.ToString(must[*secretsmanager.PutSecretValueOutput](t, b, "put secret value")(b.put(ctx, name, token, value, stages...)).VersionId)
}

func (b *backend) moveStage(ctx context.Context, name, stage, to, from string) error {
	in := &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String(b.n(name)), VersionStage: aws.String(stage)}
	if to != "" {
		in.MoveToVersionId = aws.String(to)
	}
	if from != "" {
		in.RemoveFromVersionId = aws.String(from)
	}
	_, err := b.sm.UpdateSecretVersionStage(ctx, in)
	return err
}

func (b *backend) describe(ctx context.Context, t *testing.T, name string) *secretsmanager.DescribeSecretOutput {
	t.Helper()
	return must[*secretsmanager.DescribeSecretOutput](t, b, "describe secret")(b.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(b.n(name))}))
}

// labels renders VersionIdsToStages with the version ids replaced by the
// names the case gave them: "v1=AWSCURRENT,AWSPENDING v2=AWSPREVIOUS".
func labels(stages map[string][]string, names map[string]string) string {
	var out []string
	for id, st := range stages {
		if len(st) == 0 {
			continue // moto lists deprecated versions with no labels; keyrot ignores them
		}
		n := names[id]
		if n == "" {
			n = "?"
		}
		s := slices.Clone(st)
		sort.Strings(s)
		out = append(out, n+"="+strings.Join(s, ","))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func (b *backend) stages(ctx context.Context, t *testing.T, name string, names map[string]string) string {
	t.Helper()
	return labels(b.describe(ctx, t, name).VersionIdsToStages, names)
}

func smTags(tags []smtypes.Tag) string {
	var out []string
	for _, tg := range tags {
		out = append(out, aws.ToString(tg.Key)+"="+aws.ToString(tg.Value))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func iamTags(tags []iamtypes.Tag) string {
	var out []string
	for _, tg := range tags {
		out = append(out, aws.ToString(tg.Key)+"="+aws.ToString(tg.Value))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// trimNS removes the case's prefix from names in s.
func (b *backend) trimNS(s string) string { return strings.ReplaceAll(s, b.ns, "") }

var secretARNRE = regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:123456789012:secret:(.+)-[A-Za-z0-9]{6}$`)

// secretARN reduces a secret ARN to the name inside it, or says it is malformed.
func (b *backend) secretARN(arn string) string {
	m := secretARNRE.FindStringSubmatch(arn)
	if m == nil {
		return "malformed ARN " + arn
	}
	return b.trimNS(m[1])
}

func recent(t time.Time) bool {
	return !t.IsZero() && time.Since(t) < time.Hour && time.Until(t) < time.Hour
}

func userPolicy(arn string) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"KeyrotUserReadsOwnKey","Effect":"Allow","Principal":{"AWS":%q},"Action":["secretsmanager:GetSecretValue","secretsmanager:DescribeSecret"],"Resource":"*"}]}`, arn)
}

// --- the cases ----------------------------------------------------------------

func conformanceCases() []conformanceCase {
	var cs []conformanceCase
	add := func(c ...conformanceCase) { cs = append(cs, c...) }
	add(iamCases()...)
	add(stsCases()...)
	add(secretsManagerCases()...)
	add(sesCases()...)
	add(orgCases()...)
	add(sqsCases()...)
	return cs
}

func iamCases() []conformanceCase {
	return []conformanceCase{
		{name: "iam/ListUsers pages under a path prefix", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			path := "/kr/" + b.ns + "/"
			for _, n := range []string{"u1", "u2", "u3"} {
				b.createUser(ctx, t, n, path)
			}
			b.createUser(ctx, t, "elsewhere", "/other/")
			p1, err := b.iam.ListUsers(ctx, &iam.ListUsersInput{PathPrefix: aws.String(path), MaxItems: aws.Int32(2)})
			f.outcome("page 1", err)
			if err != nil {
				return
			}
			f.set("page 1 users", len(p1.Users))
			f.set("page 1 truncated", p1.IsTruncated)
			f.set("page 1 has marker", aws.ToString(p1.Marker) != "")
			var all []string
			p := iam.NewListUsersPaginator(b.iam, &iam.ListUsersInput{PathPrefix: aws.String(path), MaxItems: aws.Int32(2)})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					f.outcome("paging", err)
					return
				}
				for _, u := range page.Users {
					all = append(all, b.trimNS(aws.ToString(u.UserName)+" "+aws.ToString(u.Path)+" "+aws.ToString(u.Arn)))
				}
			}
			sort.Strings(all)
			f.set("users", strings.Join(all, "; "))
		}, diverges: map[string]divergence{
			"page 1 users":      {sandbox: "2", moto: "3", entry: "D6"},
			"page 1 truncated":  {sandbox: "true", moto: "false", entry: "D6"},
			"page 1 has marker": {sandbox: "true", moto: "false", entry: "D6"},
		}},
		{name: "iam/GetUser returns path, ARN and tags", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			created := b.createUser(ctx, t, "alice", "/team/", "owner", "alice@example.com", "keyrot:exempt", "true")
			out, err := b.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(b.n("alice"))})
			f.outcome("get", err)
			if err != nil {
				return
			}
			u := out.User
			f.set("name", b.trimNS(aws.ToString(u.UserName)))
			f.set("path", aws.ToString(u.Path))
			f.set("arn", b.trimNS(aws.ToString(u.Arn)))
			f.set("id as created", aws.ToString(u.UserId) == aws.ToString(created.UserId))
			f.set("tags", iamTags(u.Tags))
		}},
		{name: "iam/GetUser of a missing user", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(b.n("nobody"))})
			f.outcome("get", err)
		}},
		{name: "iam/ListUserTags pages", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "tagged", "", "a", "1", "b", "2", "c", "3")
			p1, err := b.iam.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: aws.String(b.n("tagged")), MaxItems: aws.Int32(2)})
			f.outcome("page 1", err)
			if err != nil {
				return
			}
			f.set("page 1 tags", len(p1.Tags))
			f.set("page 1 truncated", p1.IsTruncated)
			var all []iamtypes.Tag
			p := iam.NewListUserTagsPaginator(b.iam, &iam.ListUserTagsInput{UserName: aws.String(b.n("tagged")), MaxItems: aws.Int32(2)})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					f.outcome("paging", err)
					return
				}
				all = append(all, page.Tags...)
			}
			f.set("all tags", iamTags(all))
		}, diverges: map[string]divergence{
			"page 1 tags":      {sandbox: "2", moto: "3", entry: "D6"},
			"page 1 truncated": {sandbox: "true", moto: "false", entry: "D6"},
		}},
		{name: "iam/GetGroup lists members and pages", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			group := b.n("exempt")
			must[*iam.CreateGroupOutput](t, b, "create group")(b.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: aws.String(group)}))
			for _, n := range []string{"g1", "g2", "g3"} {
				b.createUser(ctx, t, n, "")
				must[*iam.AddUserToGroupOutput](t, b, "add to group")(b.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String(group), UserName: aws.String(b.n(n))}))
			}
			var names []string
			pages := 0
			p := iam.NewGetGroupPaginator(b.iam, &iam.GetGroupInput{GroupName: aws.String(group), MaxItems: aws.Int32(2)})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					f.outcome("paging", err)
					return
				}
				pages++
				for _, u := range page.Users {
					names = append(names, b.trimNS(aws.ToString(u.UserName)))
				}
			}
			sort.Strings(names)
			f.set("members", strings.Join(names, ","))
			f.set("pages", pages)
		}, diverges: map[string]divergence{"pages": {sandbox: "2", moto: "1", entry: "D6"}}},
		{name: "iam/GetGroup of a missing group", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: aws.String(b.n("nogroup"))})
			f.outcome("get", err)
		}},
		{name: "iam/CreateAccessKey returns an active key and its secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			out, err := b.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(b.n("bot"))})
			f.outcome("create", err)
			if err != nil {
				return
			}
			k := out.AccessKey
			id := aws.ToString(k.AccessKeyId)
			f.set("id shape", regexp.MustCompile(`^AKIA[A-Z0-9]{16}$`).MatchString(id))
			f.set("secret length", len(aws.ToString(k.SecretAccessKey)))
			f.set("status", k.Status)
			f.set("user", b.trimNS(aws.ToString(k.UserName)))
			f.set("create date recent", recent(aws.ToTime(k.CreateDate)))
		}},
		{name: "iam/CreateAccessKey refuses a third key", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			b.createKey(ctx, t, "bot")
			b.createKey(ctx, t, "bot")
			_, err := b.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(b.n("bot"))})
			f.outcome("third key", err)
			keys := must[*iam.ListAccessKeysOutput](t, b, "list keys")(b.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(b.n("bot"))}))
			f.set("keys after", len(keys.AccessKeyMetadata))
		}},
		{name: "iam/CreateAccessKey for a missing user", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(b.n("nobody"))})
			f.outcome("create", err)
		}},
		{name: "iam/ListAccessKeys shows ids, status and dates", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			k1, k2 := b.createKey(ctx, t, "bot"), b.createKey(ctx, t, "bot")
			b.setStatus(ctx, t, "bot", aws.ToString(k1.AccessKeyId), iamtypes.StatusTypeInactive)
			out, err := b.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(b.n("bot"))})
			f.outcome("list", err)
			if err != nil {
				return
			}
			name := map[string]string{aws.ToString(k1.AccessKeyId): "k1", aws.ToString(k2.AccessKeyId): "k2"}
			var seen []string
			for _, m := range out.AccessKeyMetadata {
				seen = append(seen, fmt.Sprintf("%s %s %s dated=%v", name[aws.ToString(m.AccessKeyId)], m.Status, b.trimNS(aws.ToString(m.UserName)), recent(aws.ToTime(m.CreateDate))))
			}
			sort.Strings(seen)
			f.set("keys", strings.Join(seen, "; "))
		}},
		{name: "iam/ListAccessKeys of a missing user", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(b.n("nobody"))})
			f.outcome("list", err)
		}},
		{name: "iam/UpdateAccessKey deactivates and reactivates", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			id := aws.ToString(b.createKey(ctx, t, "bot").AccessKeyId)
			status := func() string {
				out := must[*iam.ListAccessKeysOutput](t, b, "list keys")(b.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(b.n("bot"))}))
				return string(out.AccessKeyMetadata[0].Status)
			}
			_, err := b.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(b.n("bot")), AccessKeyId: aws.String(id), Status: iamtypes.StatusTypeInactive})
			f.outcome("deactivate", err)
			f.set("after deactivate", status())
			_, err = b.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(b.n("bot")), AccessKeyId: aws.String(id), Status: iamtypes.StatusTypeInactive})
			f.outcome("deactivate again", err)
			_, err = b.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(b.n("bot")), AccessKeyId: aws.String(id), Status: iamtypes.StatusTypeActive})
			f.outcome("reactivate", err)
			f.set("after reactivate", status())
		}},
		{name: "iam/UpdateAccessKey of an unknown key", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			_, err := b.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(b.n("bot")), AccessKeyId: aws.String("AKIAUNKNOWNUNKNOWN01"), Status: iamtypes.StatusTypeInactive})
			f.outcome("update", err)
		}},
		{name: "iam/DeleteAccessKey, then again", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			id := aws.ToString(b.createKey(ctx, t, "bot").AccessKeyId)
			b.createKey(ctx, t, "bot")
			in := &iam.DeleteAccessKeyInput{UserName: aws.String(b.n("bot")), AccessKeyId: aws.String(id)}
			_, err := b.iam.DeleteAccessKey(ctx, in)
			f.outcome("delete", err)
			keys := must[*iam.ListAccessKeysOutput](t, b, "list keys")(b.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(b.n("bot"))}))
			f.set("keys after", len(keys.AccessKeyMetadata))
			_, err = b.iam.DeleteAccessKey(ctx, in)
			f.outcome("delete again", err)
			// The freed slot takes a new key (the two-keys rule counts what exists).
			_, err = b.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(b.n("bot"))})
			f.outcome("create in the freed slot", err)
		}},
		{name: "iam/GetAccessKeyLastUsed of a never-used key", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			id := aws.ToString(b.createKey(ctx, t, "bot").AccessKeyId)
			out, err := b.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(id)})
			f.outcome("last used", err)
			if err != nil {
				return
			}
			f.set("user", b.trimNS(aws.ToString(out.UserName)))
			f.set("has AccessKeyLastUsed", out.AccessKeyLastUsed != nil)
			if lu := out.AccessKeyLastUsed; lu != nil {
				f.set("date", lu.LastUsedDate != nil)
				f.set("service", aws.ToString(lu.ServiceName))
				f.set("region", aws.ToString(lu.Region))
			}
		}},
		{name: "iam/GetAccessKeyLastUsed after the key signed a call", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			k := b.createKey(ctx, t, "bot")
			must[*sts.GetCallerIdentityOutput](t, b, "sts")(b.callerIdentity(ctx, aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey)))
			out, err := b.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: k.AccessKeyId})
			f.outcome("last used", err)
			if err != nil || out.AccessKeyLastUsed == nil {
				f.set("has AccessKeyLastUsed", false)
				return
			}
			lu := out.AccessKeyLastUsed
			f.set("date recent", recent(aws.ToTime(lu.LastUsedDate)))
			f.set("service", aws.ToString(lu.ServiceName))
			f.set("region", aws.ToString(lu.Region))
		}},
		{name: "iam/GetAccessKeyLastUsed of an unknown key", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String("AKIAUNKNOWNUNKNOWN02")})
			f.outcome("last used", err)
		}},
	}
}

func stsCases() []conformanceCase {
	return []conformanceCase{
		{name: "sts/GetCallerIdentity names the key's user", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			u := b.createUser(ctx, t, "bot", "/ci/")
			k := b.createKey(ctx, t, "bot")
			out, err := b.callerIdentity(ctx, aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey))
			f.outcome("call", err)
			if err != nil {
				return
			}
			f.set("arn", b.trimNS(aws.ToString(out.Arn)))
			f.set("arn is the user's", aws.ToString(out.Arn) == aws.ToString(u.Arn))
			f.set("account", aws.ToString(out.Account))
			f.set("user id is the user's", aws.ToString(out.UserId) == aws.ToString(u.UserId))
		}},
		{name: "sts/an inactive key is rejected", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			k := b.createKey(ctx, t, "bot")
			b.setStatus(ctx, t, "bot", aws.ToString(k.AccessKeyId), iamtypes.StatusTypeInactive)
			_, err := b.callerIdentity(ctx, aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey))
			f.outcome("call", err)
		}, diverges: map[string]divergence{"call": {sandbox: "InvalidClientTokenId 403", moto: "ok", entry: "D2"}}},
		{name: "sts/a reactivated key is accepted", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			k := b.createKey(ctx, t, "bot")
			b.setStatus(ctx, t, "bot", aws.ToString(k.AccessKeyId), iamtypes.StatusTypeInactive)
			b.setStatus(ctx, t, "bot", aws.ToString(k.AccessKeyId), iamtypes.StatusTypeActive)
			_, err := b.callerIdentity(ctx, aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey))
			f.outcome("call", err)
		}},
		{name: "sts/an unknown key is rejected", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.callerIdentity(ctx, "AKIAUNKNOWNUNKNOWN03", "0123456789012345678901234567890123456789")
			f.outcome("call", err)
		}},
		{name: "sts/a deleted key is rejected", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			k := b.createKey(ctx, t, "bot")
			must[*iam.DeleteAccessKeyOutput](t, b, "delete key")(b.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(b.n("bot")), AccessKeyId: k.AccessKeyId}))
			_, err := b.callerIdentity(ctx, aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey))
			f.outcome("call", err)
		}},
		{name: "sts/a wrong secret is rejected", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			k := b.createKey(ctx, t, "bot")
			_, err := b.callerIdentity(ctx, aws.ToString(k.AccessKeyId), strings.Repeat("x", 40))
			f.outcome("call", err)
		}},
	}
}

func secretsManagerCases() []conformanceCase {
	value := aws.String(`{"AccessKeyId":"AKIAEXAMPLE"}`)
	return []conformanceCase{
		{name: "sm/CreateSecret without a value, described", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			in := &secretsmanager.CreateSecretInput{Name: aws.String(b.n("ring/bot")), Description: aws.String("current key of bot"),
				Tags: []smtypes.Tag{{Key: aws.String("keyrot:managed"), Value: aws.String("true")}, {Key: aws.String("keyrot:user"), Value: aws.String("bot")}}}
			out, err := b.sm.CreateSecret(ctx, in)
			f.outcome("create", err)
			if err != nil {
				return
			}
			f.set("arn", b.secretARN(aws.ToString(out.ARN)))
			f.set("version id", aws.ToString(out.VersionId))
			d := b.describe(ctx, t, "ring/bot")
			f.set("described arn", aws.ToString(d.ARN) == aws.ToString(out.ARN))
			f.set("name", b.trimNS(aws.ToString(d.Name)))
			f.set("description", aws.ToString(d.Description))
			f.set("tags", smTags(d.Tags))
			f.set("versions", len(d.VersionIdsToStages))
			f.set("deleted", d.DeletedDate != nil)
			_, err = b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("ring/bot"))})
			f.outcome("get value of a secret with no version", err)
		}},
		{name: "sm/CreateSecret of an existing name", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "dup", nil)
			_, err := b.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(b.n("dup"))})
			f.outcome("create again", err)
		}},
		{name: "sm/DescribeSecret of a missing secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(b.n("missing"))})
			f.outcome("describe", err)
		}},
		{name: "sm/PutSecretValue's first version is AWSCURRENT whatever VersionStages says", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "first", nil)
			out, err := b.put(ctx, "first", tokenOf("first-1"), "pending key", "AWSPENDING")
			f.outcome("put", err)
			if err != nil {
				return
			}
			v1 := aws.ToString(out.VersionId)
			f.set("returned stages", strings.Join(slices.Sorted(slices.Values(out.VersionStages)), ","))
			f.set("stages", b.stages(ctx, t, "first", map[string]string{v1: "v1"}))
			cur, err := b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("first"))})
			f.outcome("get current", err)
			if err == nil {
				f.set("current value", aws.ToString(cur.SecretString))
			}
			// The second version gets only what it asks for.
			v2 := b.mustPut(ctx, t, "first", tokenOf("first-2"), "second pending", "AWSPENDING")
			f.set("stages after a second pending", b.stages(ctx, t, "first", map[string]string{v1: "v1", v2: "v2"}))
		}},
		{name: "sm/PutSecretValue AWSPENDING beside a current version", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			v1 := aws.ToString(b.createSecret(ctx, t, "s", value).VersionId)
			out, err := b.put(ctx, "s", tokenOf("s-2"), "next", "AWSPENDING")
			f.outcome("put", err)
			if err != nil {
				return
			}
			v2 := aws.ToString(out.VersionId)
			f.set("version id is the token", v2 == tokenOf("s-2"))
			f.set("returned stages", strings.Join(out.VersionStages, ","))
			f.set("stages", b.stages(ctx, t, "s", map[string]string{v1: "v1", v2: "v2"}))
		}},
		{name: "sm/PutSecretValue without VersionStages moves AWSCURRENT and AWSPREVIOUS", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			v1 := aws.ToString(b.createSecret(ctx, t, "s", value).VersionId)
			v2 := b.mustPut(ctx, t, "s", "", "two")
			v3 := b.mustPut(ctx, t, "s", "", "three")
			f.set("stages", b.stages(ctx, t, "s", map[string]string{v1: "v1", v2: "v2", v3: "v3"}))
		}},
		{name: "sm/PutSecretValue retried with the same token and value", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			v1 := aws.ToString(b.createSecret(ctx, t, "s", value).VersionId)
			first := b.mustPut(ctx, t, "s", tokenOf("retry"), "key", "AWSPENDING")
			again, err := b.put(ctx, "s", tokenOf("retry"), "key", "AWSPENDING")
			f.outcome("retry", err)
			if err == nil {
				f.set("same version", aws.ToString(again.VersionId) == first)
			}
			f.set("stages", b.stages(ctx, t, "s", map[string]string{v1: "v1", first: "pending"}))
		}},
		{name: "sm/PutSecretValue with a used token and another value", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "s", value)
			b.mustPut(ctx, t, "s", tokenOf("gen-7"), "engine A's key", "AWSPENDING")
			_, err := b.put(ctx, "s", tokenOf("gen-7"), "engine B's key", "AWSPENDING")
			f.outcome("conflicting put", err)
			got := must[*secretsmanager.GetSecretValueOutput](t, b, "get pending")(b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s")), VersionStage: aws.String("AWSPENDING")}))
			f.set("pending kept", aws.ToString(got.SecretString))
		}, diverges: map[string]divergence{
			"conflicting put": {sandbox: "ResourceExistsException 400", moto: "ok", entry: "D7"},
			"pending kept":    {sandbox: "engine A's key", moto: "engine B's key", entry: "D7"},
		}},
		{name: "sm/PutSecretValue on a missing secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.put(ctx, "missing", tokenOf("x"), "v", "AWSPENDING")
			f.outcome("put", err)
		}},
		{name: "sm/GetSecretValue by staging label", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "s", aws.String("one"))
			b.mustPut(ctx, t, "s", "", "two")
			pending := b.mustPut(ctx, t, "s", tokenOf("p"), "three", "AWSPENDING")
			for _, stage := range []string{"AWSCURRENT", "AWSPREVIOUS", "AWSPENDING", "NOSUCHLABEL"} {
				out, err := b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s")), VersionStage: aws.String(stage)})
				f.outcome(stage, err)
				if err == nil {
					f.set(stage+" value", aws.ToString(out.SecretString))
					f.set(stage+" stages", strings.Join(slices.Sorted(slices.Values(out.VersionStages)), ","))
					f.set(stage+" name", b.trimNS(aws.ToString(out.Name)))
				}
			}
			out, err := b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s")), VersionId: aws.String(pending)})
			f.outcome("by version id", err)
			if err == nil {
				f.set("by version id value", aws.ToString(out.SecretString))
			}
		}},
		{name: "sm/GetSecretValue of a missing secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("missing")), VersionStage: aws.String("AWSCURRENT")})
			f.outcome("get", err)
		}},
		{name: "sm/UpdateSecretVersionStage promotes the pending version", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			v1 := aws.ToString(b.createSecret(ctx, t, "s", value).VersionId)
			v2 := b.mustPut(ctx, t, "s", tokenOf("p"), "next", "AWSPENDING")
			names := map[string]string{v1: "v1", v2: "v2"}
			f.outcome("move AWSCURRENT", b.moveStage(ctx, "s", "AWSCURRENT", v2, v1))
			f.set("after move", b.stages(ctx, t, "s", names))
			f.outcome("remove AWSPENDING", b.moveStage(ctx, "s", "AWSPENDING", "", v2))
			f.set("after remove", b.stages(ctx, t, "s", names))
			byLabel := must[*secretsmanager.GetSecretValueOutput](t, b, "get AWSCURRENT")(b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s")), VersionStage: aws.String("AWSCURRENT")}))
			f.set("AWSCURRENT by label", aws.ToString(byLabel.SecretString))
			byDefault := must[*secretsmanager.GetSecretValueOutput](t, b, "get default")(b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s"))}))
			f.set("AWSCURRENT by default", aws.ToString(byDefault.SecretString))
			batch := must[*secretsmanager.BatchGetSecretValueOutput](t, b, "batch get")(b.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{b.n("s")}}))
			if len(batch.SecretValues) == 1 {
				f.set("AWSCURRENT by batch", aws.ToString(batch.SecretValues[0].SecretString))
			}
		}, diverges: map[string]divergence{
			"AWSCURRENT by default": {sandbox: "next", moto: `{"AccessKeyId":"AKIAEXAMPLE"}`, entry: "D10"},
			"AWSCURRENT by batch":   {sandbox: "next", moto: `{"AccessKeyId":"AKIAEXAMPLE"}`, entry: "D10"},
		}},
		{name: "sm/UpdateSecretVersionStage needs RemoveFromVersionId", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			v1 := aws.ToString(b.createSecret(ctx, t, "s", value).VersionId)
			v2 := b.mustPut(ctx, t, "s", tokenOf("p"), "next", "AWSPENDING")
			f.outcome("move without remove", b.moveStage(ctx, "s", "AWSCURRENT", v2, ""))
			f.set("stages", b.stages(ctx, t, "s", map[string]string{v1: "v1", v2: "v2"}))
		}},
		{name: "sm/UpdateSecretVersionStage from a version without the label", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			v1 := aws.ToString(b.createSecret(ctx, t, "s", value).VersionId)
			v2 := b.mustPut(ctx, t, "s", tokenOf("p"), "next", "AWSPENDING")
			f.outcome("remove from the wrong version", b.moveStage(ctx, "s", "AWSCURRENT", v2, v2))
			f.set("stages", b.stages(ctx, t, "s", map[string]string{v1: "v1", v2: "v2"}))
		}},
		{name: "sm/UpdateSecretVersionStage on a missing secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			f.outcome("move", b.moveStage(ctx, "missing", "AWSCURRENT", tokenOf("a"), tokenOf("b")))
		}},
		{name: "sm/TagResource and UntagResource", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "s", nil, "keyrot:managed", "true", "keyrot:generation", "1")
			tag := func(kv ...string) error {
				in := &secretsmanager.TagResourceInput{SecretId: aws.String(b.n("s"))}
				for i := 0; i+1 < len(kv); i += 2 {
					in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
				}
				_, err := b.sm.TagResource(ctx, in)
				return err
			}
			untag := func(keys ...string) error {
				_, err := b.sm.UntagResource(ctx, &secretsmanager.UntagResourceInput{SecretId: aws.String(b.n("s")), TagKeys: keys})
				return err
			}
			f.outcome("overwrite and add", tag("keyrot:generation", "2", "keyrot:intent", "3 1 2026-11-02T09:00:00Z", "keyrot:inactive:AKIAEXAMPLE", "2026-11-02T09:00:00Z"))
			f.set("after tag", smTags(b.describe(ctx, t, "s").Tags))
			f.outcome("untag", untag("keyrot:intent", "keyrot:inactive:AKIAEXAMPLE"))
			f.outcome("untag an absent key", untag("keyrot:warned:unmanaged-key"))
			f.set("after untag", smTags(b.describe(ctx, t, "s").Tags))
		}},
		{name: "sm/TagResource on a missing secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String(b.n("missing")), Tags: []smtypes.Tag{{Key: aws.String("a"), Value: aws.String("b")}}})
			f.outcome("tag", err)
			_, err = b.sm.UntagResource(ctx, &secretsmanager.UntagResourceInput{SecretId: aws.String(b.n("missing")), TagKeys: []string{"a"}})
			f.outcome("untag", err)
		}},
		{name: "sm/PutResourcePolicy is kept as written", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "s", value)
			policy := userPolicy("arn:aws:iam::123456789012:user/" + b.n("bot"))
			out, err := b.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(b.n("s")), ResourcePolicy: aws.String(policy), BlockPublicPolicy: aws.Bool(true)})
			f.outcome("put", err)
			if err == nil {
				f.set("name", b.trimNS(aws.ToString(out.Name)))
			}
			got, err := b.sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String(b.n("s"))})
			f.outcome("get", err)
			if err == nil {
				var a, b any
				_ = json.Unmarshal([]byte(policy), &a)
				_ = json.Unmarshal([]byte(aws.ToString(got.ResourcePolicy)), &b)
				f.set("same policy", reflect.DeepEqual(a, b))
			}
		}},
		{name: "sm/PutResourcePolicy on a missing secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(b.n("missing")), ResourcePolicy: aws.String(userPolicy("arn:aws:iam::123456789012:user/x"))})
			f.outcome("put", err)
		}},
		{name: "sm/PutResourcePolicy refuses a public policy under BlockPublicPolicy", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "s", value)
			public := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
			_, err := b.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(b.n("s")), ResourcePolicy: aws.String(public), BlockPublicPolicy: aws.Bool(true)})
			f.outcome("put public", err)
		}, diverges: map[string]divergence{"put public": {sandbox: "PublicPolicyException 400", moto: "ok", entry: "D4"}}},
		{name: "sm/a resource policy lets the user read its own secret", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			u := b.createUser(ctx, t, "bot", "")
			k := b.createKey(ctx, t, "bot")
			b.createSecret(ctx, t, "s", aws.String("the key"))
			must[*secretsmanager.PutResourcePolicyOutput](t, b, "put policy")(b.sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(b.n("s")), ResourcePolicy: aws.String(userPolicy(aws.ToString(u.Arn)))}))
			as := secretsmanager.NewFromConfig(b.user(aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey)))
			_, err := as.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(b.n("s"))})
			f.outcome("describe as the user", err)
			_, err = as.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s"))})
			f.outcome("get as the user", err)
			_, err = as.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(b.n("s")), SecretString: aws.String("mine now")})
			f.outcome("put as the user", err)
		}, diverges: map[string]divergence{
			"describe as the user": {sandbox: "ok", moto: "undecodable error 403", entry: "D3"},
			"get as the user":      {sandbox: "ok", moto: "undecodable error 403", entry: "D3"},
			"put as the user":      {sandbox: "AccessDeniedException 400", moto: "undecodable error 403", entry: "D3"},
		}},
		{name: "sm/a user without a grant is denied", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createUser(ctx, t, "bot", "")
			k := b.createKey(ctx, t, "bot")
			b.createSecret(ctx, t, "s", aws.String("someone else's key"))
			as := secretsmanager.NewFromConfig(b.user(aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey)))
			_, err := as.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s"))})
			f.outcome("get as the user", err)
		}, diverges: map[string]divergence{"get as the user": {sandbox: "AccessDeniedException 400", moto: "undecodable error 403", entry: "D3"}}},
		{name: "sm/ListSecrets filters by name prefix and tag key, and pages", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			prefix := b.n("iam-key-rotation/")
			b.createSecret(ctx, t, "iam-key-rotation/a", nil, "keyrot:managed", "true", "keyrot:current-secret", prefix+"a")
			b.createSecret(ctx, t, "iam-key-rotation/a/1", nil, "keyrot:managed", "true")
			b.createSecret(ctx, t, "iam-key-rotation/b", nil, "keyrot:managed", "true", "keyrot:current-secret", prefix+"b/1")
			b.createSecret(ctx, t, "other/c", nil, "keyrot:managed", "true", "keyrot:current-secret", "x")
			var names []string
			pages := 0
			p := secretsmanager.NewListSecretsPaginator(b.sm, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(1), Filters: []smtypes.Filter{
				{Key: smtypes.FilterNameStringTypeName, Values: []string{prefix}},
				{Key: smtypes.FilterNameStringTypeTagKey, Values: []string{"keyrot:current-secret"}},
			}})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					f.outcome("paging", err)
					return
				}
				pages++
				for _, e := range page.SecretList {
					names = append(names, b.trimNS(aws.ToString(e.Name)+" ["+smTags(e.Tags)+"]"))
				}
			}
			sort.Strings(names)
			f.set("secrets", strings.Join(names, "; "))
			f.set("non-empty pages", pages >= 2)
		}},
		{name: "sm/BatchGetSecretValue reads current values by name", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "a", aws.String("value a"))
			b.createSecret(ctx, t, "b", aws.String("value b"))
			b.mustPut(ctx, t, "b", tokenOf("b-p"), "pending b", "AWSPENDING")
			out, err := b.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{b.n("a"), b.n("b")}})
			f.outcome("batch", err)
			if err != nil {
				return
			}
			var vals []string
			for _, v := range out.SecretValues {
				vals = append(vals, b.trimNS(aws.ToString(v.Name))+"="+aws.ToString(v.SecretString)+" "+strings.Join(v.VersionStages, ","))
			}
			sort.Strings(vals)
			f.set("values", strings.Join(vals, "; "))
			f.set("errors", len(out.Errors))
		}},
		{name: "sm/BatchGetSecretValue reports a missing secret among found ones", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "a", aws.String("value a"))
			out, err := b.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{b.n("a"), b.n("missing")}})
			f.outcome("batch", err)
			if err != nil {
				return
			}
			f.set("values", len(out.SecretValues))
			var errs []string
			for _, e := range out.Errors {
				errs = append(errs, b.trimNS(aws.ToString(e.SecretId))+" "+aws.ToString(e.ErrorCode))
			}
			f.set("errors", strings.Join(errs, "; "))
		}},
		{name: "sm/a secret scheduled for deletion", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			b.createSecret(ctx, t, "s", value)
			_, err := b.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String(b.n("s")), RecoveryWindowInDays: aws.Int64(7)})
			f.outcome("delete", err)
			d, err := b.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(b.n("s"))})
			f.outcome("describe", err)
			if err == nil {
				f.set("deleted date set", d.DeletedDate != nil)
			}
			_, err = b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.n("s"))})
			f.outcome("get", err)
			_, err = b.put(ctx, "s", tokenOf("p"), "v", "AWSPENDING")
			f.outcome("put", err)
			_, err = b.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(b.n("s"))})
			f.outcome("create again", err)
		}, diverges: map[string]divergence{
			"put":          {sandbox: "InvalidRequestException 400", moto: "ok", entry: "D8"},
			"create again": {sandbox: "InvalidRequestException 400", moto: "ResourceExistsException 400", entry: "D8"},
		}},
	}
}

func sesCases() []conformanceCase {
	simple := func(b *backend, from string, to ...string) *sesv2.SendEmailInput {
		return &sesv2.SendEmailInput{
			FromEmailAddress: aws.String(from),
			Destination:      &sestypes.Destination{ToAddresses: to},
			Content: &sestypes.EmailContent{Simple: &sestypes.Message{
				Subject: &sestypes.Content{Data: aws.String("[keyrot] key created for " + b.n("bot")), Charset: aws.String("UTF-8")},
				Body: &sestypes.Body{
					Text: &sestypes.Content{Data: aws.String("A new key is current."), Charset: aws.String("UTF-8")},
					Html: &sestypes.Content{Data: aws.String("<p>A new key is current.</p>"), Charset: aws.String("UTF-8")},
				},
				Headers: []sestypes.MessageHeader{{Name: aws.String("X-Keyrot-Event"), Value: aws.String("key_created")}},
			}},
		}
	}
	return []conformanceCase{
		{name: "ses/SendEmail sends text and HTML from a verified sender", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			from := b.n("keyrot@example.com")
			if err := b.verifySender(ctx, from); err != nil {
				t.Fatalf("%s: verify sender: %v", b.name, err)
			}
			out, err := b.ses.SendEmail(ctx, simple(b, from, "admin@example.com", "owner@example.com"))
			f.outcome("send", err)
			if err == nil {
				f.set("message id", aws.ToString(out.MessageId) != "")
			}
		}},
		{name: "ses/SendEmail to a malformed address", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			from := b.n("keyrot@example.com")
			if err := b.verifySender(ctx, from); err != nil {
				t.Fatalf("%s: verify sender: %v", b.name, err)
			}
			_, err := b.ses.SendEmail(ctx, simple(b, from, "not an address"))
			f.outcome("send", err)
		}, diverges: map[string]divergence{"send": {sandbox: "BadRequestException 400", moto: "InvalidParameterValue 400", entry: "D9"}}},
		{name: "ses/SendEmail from an unverified sender", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			_, err := b.ses.SendEmail(ctx, simple(b, b.n("stranger@example.org"), "admin@example.com"))
			f.outcome("send", err)
		}, diverges: map[string]divergence{"send": {sandbox: "ok", moto: "MessageRejected 400", entry: "D5"}}},
	}
}

// tokenOf is a valid ClientRequestToken (32-64 characters) named by s.
func tokenOf(s string) string {
	t := "tok-" + s
	return (t + strings.Repeat("0", 36))[:max(36, len(t))]
}
