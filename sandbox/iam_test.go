package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// errCode returns the AWS error code of err, or "" if it is not an API error.
func awsErrCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func expectCode(t *testing.T, err error, want string) {
	t.Helper()
	if got := awsErrCode(err); got != want {
		t.Fatalf("error code = %q (err %v), want %q", got, err, want)
	}
}

func ok1[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

type coreEnv struct {
	s     *sandbox.Server
	clock *sandboxtest.Clock
	iam   *iam.Client
	sts   *sts.Client
}

var coreEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newCoreEnv(t *testing.T, opts sandbox.Options) *coreEnv {
	t.Helper()
	clock := sandboxtest.NewClock(coreEpoch)
	if opts.Clock == nil {
		opts.Clock = clock
	}
	s := sandboxtest.Start(t, opts)
	cfg := sandboxtest.Config(t, s)
	return &coreEnv{s: s, clock: clock, iam: iam.NewFromConfig(cfg), sts: sts.NewFromConfig(cfg)}
}

// newUserWithKey creates a user and an access key for it.
func (e *coreEnv) newUserWithKey(t *testing.T, name string) *iamtypes.AccessKey {
	t.Helper()
	ctx := context.Background()
	if _, err := e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		t.Fatalf("create user %q: %v", name, err)
	}
	out, err := e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		t.Fatalf("create access key for %q: %v", name, err)
	}
	return out.AccessKey
}

func (e *coreEnv) userSTS(t *testing.T, k *iamtypes.AccessKey) *sts.Client {
	return sts.NewFromConfig(sandboxtest.UserConfig(t, e.s, aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey)))
}

func TestUsers(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()

	out, err := e.iam.CreateUser(ctx, &iam.CreateUserInput{
		UserName: aws.String("alice"),
		Path:     aws.String("/team/"),
		Tags:     []iamtypes.Tag{{Key: aws.String("owner"), Value: aws.String("ops")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	u := out.User
	if got, want := aws.ToString(u.Arn), "arn:aws:iam::123456789012:user/team/alice"; got != want {
		t.Errorf("arn = %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^AIDA[A-Z2-7]{17}$`).MatchString(aws.ToString(u.UserId)) {
		t.Errorf("user id = %q, want AIDA...", aws.ToString(u.UserId))
	}
	if got := aws.ToTime(u.CreateDate); !got.Equal(coreEpoch) {
		t.Errorf("create date = %v, want %v", got, coreEpoch)
	}
	if len(u.Tags) != 1 || aws.ToString(u.Tags[0].Key) != "owner" {
		t.Errorf("tags = %+v", u.Tags)
	}

	_, err = e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("alice")})
	expectCode(t, err, "EntityAlreadyExists")
	var exists *iamtypes.EntityAlreadyExistsException
	if !errors.As(err, &exists) {
		t.Errorf("error %T is not a typed EntityAlreadyExistsException", err)
	}
	_, err = e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("bad name!")})
	expectCode(t, err, "ValidationError")
	_, err = e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("bob"), Path: aws.String("nopath")})
	expectCode(t, err, "ValidationError")

	got, err := e.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("alice")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.User.UserId) != aws.ToString(u.UserId) {
		t.Errorf("GetUser id = %q, want %q", aws.ToString(got.User.UserId), aws.ToString(u.UserId))
	}
	_, err = e.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("nobody")})
	expectCode(t, err, "NoSuchEntity")
	var nse *iamtypes.NoSuchEntityException
	if !errors.As(err, &nse) {
		t.Errorf("error %T is not a typed NoSuchEntityException", err)
	}

	// Tags.
	if _, err := e.iam.TagUser(ctx, &iam.TagUserInput{UserName: aws.String("alice"), Tags: []iamtypes.Tag{
		{Key: aws.String("owner"), Value: aws.String("sec")}, {Key: aws.String("env"), Value: aws.String("prod")},
	}}); err != nil {
		t.Fatal(err)
	}
	tags := ok1[*iam.ListUserTagsOutput](t)(e.iam.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: aws.String("alice"), MaxItems: aws.Int32(1)}))
	if !tags.IsTruncated || len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Value) != "sec" {
		t.Errorf("ListUserTags page 1 = %+v", tags)
	}
	tags = ok1[*iam.ListUserTagsOutput](t)(e.iam.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: aws.String("alice"), Marker: tags.Marker}))
	if tags.IsTruncated || len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Key) != "env" {
		t.Errorf("ListUserTags page 2 = %+v", tags)
	}
	if _, err := e.iam.UntagUser(ctx, &iam.UntagUserInput{UserName: aws.String("alice"), TagKeys: []string{"owner"}}); err != nil {
		t.Fatal(err)
	}
	tags = ok1[*iam.ListUserTagsOutput](t)(e.iam.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: aws.String("alice")}))
	if len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Key) != "env" {
		t.Errorf("tags after untag = %+v", tags.Tags)
	}
	_, err = e.iam.TagUser(ctx, &iam.TagUserInput{UserName: aws.String("nobody"), Tags: []iamtypes.Tag{{Key: aws.String("a"), Value: aws.String("b")}}})
	expectCode(t, err, "NoSuchEntity")

	// Delete: conflicts first.
	if _, err := e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("alice")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String("alice")})
	expectCode(t, err, "DeleteConflict")
	keys := ok1[*iam.ListAccessKeysOutput](t)(e.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("alice")}))
	for _, k := range keys.AccessKeyMetadata {
		if _, err := e.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("alice"), AccessKeyId: k.AccessKeyId}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: aws.String("g")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String("g"), UserName: aws.String("alice")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String("alice")})
	expectCode(t, err, "DeleteConflict")
	if _, err := e.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{GroupName: aws.String("g"), UserName: aws.String("alice")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String("alice")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String("alice")})
	expectCode(t, err, "NoSuchEntity")
}

func TestListUsersPagination(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()
	var want []string
	for i := range 250 {
		name := fmt.Sprintf("user-%03d", i)
		path := "/"
		if i%10 == 0 {
			path = "/svc/"
		}
		if _, err := e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name), Path: aws.String(path)}); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}

	var got []string
	pages := 0
	p := iam.NewListUsersPaginator(e.iam, &iam.ListUsersInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, u := range out.Users {
			got = append(got, aws.ToString(u.UserName))
		}
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3 (100 per page)", pages)
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed %d users, want %d in name order", len(got), len(want))
	}

	first := ok1[*iam.ListUsersOutput](t)(e.iam.ListUsers(ctx, &iam.ListUsersInput{MaxItems: aws.Int32(7)}))
	if !first.IsTruncated || len(first.Users) != 7 || first.Marker == nil {
		t.Errorf("MaxItems 7: truncated=%v users=%d marker=%v", first.IsTruncated, len(first.Users), first.Marker)
	}

	svc := ok1[*iam.ListUsersOutput](t)(e.iam.ListUsers(ctx, &iam.ListUsersInput{PathPrefix: aws.String("/svc/")}))
	if len(svc.Users) != 25 || svc.IsTruncated {
		t.Errorf("PathPrefix /svc/: %d users (truncated %v), want 25", len(svc.Users), svc.IsTruncated)
	}
	for _, u := range svc.Users {
		if aws.ToString(u.Path) != "/svc/" {
			t.Errorf("user %q has path %q", aws.ToString(u.UserName), aws.ToString(u.Path))
		}
	}

	_, err := e.iam.ListUsers(ctx, &iam.ListUsersInput{MaxItems: aws.Int32(1001)})
	expectCode(t, err, "ValidationError")
}

func TestGroups(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()
	g := ok1[*iam.CreateGroupOutput](t)(e.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: aws.String("rotators")}))
	if got, want := aws.ToString(g.Group.Arn), "arn:aws:iam::123456789012:group/rotators"; got != want {
		t.Errorf("group arn = %q, want %q", got, want)
	}
	_, err := e.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: aws.String("rotators")})
	expectCode(t, err, "EntityAlreadyExists")
	for _, n := range []string{"a", "b", "c"} {
		if _, err := e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(n)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String("rotators"), UserName: aws.String(n)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String("nogroup"), UserName: aws.String("a")})
	expectCode(t, err, "NoSuchEntity")
	_, err = e.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String("rotators"), UserName: aws.String("nouser")})
	expectCode(t, err, "NoSuchEntity")

	var members []string
	p := iam.NewGetGroupPaginator(e.iam, &iam.GetGroupInput{GroupName: aws.String("rotators"), MaxItems: aws.Int32(2)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if aws.ToString(out.Group.GroupName) != "rotators" {
			t.Errorf("group name = %q", aws.ToString(out.Group.GroupName))
		}
		for _, u := range out.Users {
			members = append(members, aws.ToString(u.UserName))
		}
	}
	if got, want := members, []string{"a", "b", "c"}; !slices.Equal(got, want) || pages != 2 {
		t.Errorf("members = %v in %d pages, want %v in 2", got, pages, want)
	}
	groups := ok1[*iam.ListGroupsForUserOutput](t)(e.iam.ListGroupsForUser(ctx, &iam.ListGroupsForUserInput{UserName: aws.String("b")}))
	if len(groups.Groups) != 1 || aws.ToString(groups.Groups[0].GroupName) != "rotators" {
		t.Errorf("groups for b = %+v", groups.Groups)
	}
	_, err = e.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: aws.String("nogroup")})
	expectCode(t, err, "NoSuchEntity")
	_, err = e.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{GroupName: aws.String("rotators"), UserName: aws.String("nouser")})
	expectCode(t, err, "NoSuchEntity")
}

func TestAccessKeys(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()
	k1 := e.newUserWithKey(t, "svc")
	if !regexp.MustCompile(`^AKIA[A-Z2-7]{16}$`).MatchString(aws.ToString(k1.AccessKeyId)) {
		t.Errorf("access key id = %q", aws.ToString(k1.AccessKeyId))
	}
	if !regexp.MustCompile(`^[A-Za-z0-9+/]{40}$`).MatchString(aws.ToString(k1.SecretAccessKey)) {
		t.Errorf("secret has the wrong shape")
	}
	if k1.Status != iamtypes.StatusTypeActive || aws.ToString(k1.UserName) != "svc" || !aws.ToTime(k1.CreateDate).Equal(coreEpoch) {
		t.Errorf("key = %+v", k1)
	}

	e.clock.Advance(time.Hour)
	k2 := ok1[*iam.CreateAccessKeyOutput](t)(e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("svc")})).AccessKey

	// The two-keys rule.
	_, err := e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("svc")})
	expectCode(t, err, "LimitExceeded")
	var le *iamtypes.LimitExceededException
	if !errors.As(err, &le) || le.ErrorMessage() != "Cannot exceed quota for AccessKeysPerUser: 2" {
		t.Errorf("LimitExceeded error = %v", err)
	}
	_, err = e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("nobody")})
	expectCode(t, err, "NoSuchEntity")

	list := ok1[*iam.ListAccessKeysOutput](t)(e.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("svc")}))
	if len(list.AccessKeyMetadata) != 2 || aws.ToString(list.AccessKeyMetadata[0].AccessKeyId) != aws.ToString(k1.AccessKeyId) ||
		aws.ToString(list.AccessKeyMetadata[1].AccessKeyId) != aws.ToString(k2.AccessKeyId) {
		t.Errorf("ListAccessKeys = %+v", list.AccessKeyMetadata)
	}

	if _, err := e.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("svc"), AccessKeyId: k1.AccessKeyId, Status: iamtypes.StatusTypeInactive}); err != nil {
		t.Fatal(err)
	}
	list = ok1[*iam.ListAccessKeysOutput](t)(e.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("svc")}))
	if list.AccessKeyMetadata[0].Status != iamtypes.StatusTypeInactive {
		t.Errorf("status after update = %q", list.AccessKeyMetadata[0].Status)
	}
	// An inactive key still counts against the quota.
	_, err = e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("svc")})
	expectCode(t, err, "LimitExceeded")

	_, err = e.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("svc"), AccessKeyId: k1.AccessKeyId, Status: "Sleeping"})
	expectCode(t, err, "ValidationError")
	_, err = e.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("svc"), AccessKeyId: aws.String("AKIAAAAAAAAAAAAAAAAA"), Status: iamtypes.StatusTypeActive})
	expectCode(t, err, "NoSuchEntity")
	if _, err := e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("other")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("other"), AccessKeyId: k1.AccessKeyId})
	expectCode(t, err, "NoSuchEntity")

	if _, err := e.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("svc"), AccessKeyId: k1.AccessKeyId}); err != nil {
		t.Fatal(err)
	}
	_, err = e.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("svc"), AccessKeyId: k1.AccessKeyId})
	expectCode(t, err, "NoSuchEntity")
	// Room for a new key again.
	if _, err := e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("svc")}); err != nil {
		t.Fatal(err)
	}
}

func TestSelfServiceAndAccessDenied(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()
	k := e.newUserWithKey(t, "self")
	e.newUserWithKey(t, "someone")
	ui := iam.NewFromConfig(sandboxtest.UserConfig(t, e.s, aws.ToString(k.AccessKeyId), aws.ToString(k.SecretAccessKey)))

	me := ok1[*iam.GetUserOutput](t)(ui.GetUser(ctx, &iam.GetUserInput{}))
	if aws.ToString(me.User.UserName) != "self" {
		t.Errorf("GetUser() as self = %q", aws.ToString(me.User.UserName))
	}
	nk := ok1[*iam.CreateAccessKeyOutput](t)(ui.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{}))
	if aws.ToString(nk.AccessKey.UserName) != "self" {
		t.Errorf("CreateAccessKey() as self: user %q", aws.ToString(nk.AccessKey.UserName))
	}
	_, err := ui.ListUsers(ctx, &iam.ListUsersInput{})
	expectCode(t, err, "AccessDenied")
	_, err = ui.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("someone")})
	expectCode(t, err, "AccessDenied")
	_, err = ui.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("x")})
	expectCode(t, err, "AccessDenied")

	// The admin is root.
	root := ok1[*iam.GetUserOutput](t)(e.iam.GetUser(ctx, &iam.GetUserInput{}))
	if got, want := aws.ToString(root.User.Arn), "arn:aws:iam::123456789012:root"; got != want {
		t.Errorf("admin GetUser arn = %q, want %q", got, want)
	}
}

func TestGetCallerIdentity(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{AccountID: "210987654321"})
	ctx := context.Background()
	admin := ok1[*sts.GetCallerIdentityOutput](t)(e.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}))
	if got, want := aws.ToString(admin.Arn), "arn:aws:iam::210987654321:root"; got != want {
		t.Errorf("admin arn = %q, want %q", got, want)
	}
	if aws.ToString(admin.Account) != "210987654321" {
		t.Errorf("account = %q", aws.ToString(admin.Account))
	}
	k := e.newUserWithKey(t, "carol")
	out := ok1[*sts.GetCallerIdentityOutput](t)(e.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}))
	if got, want := aws.ToString(out.Arn), "arn:aws:iam::210987654321:user/carol"; got != want {
		t.Errorf("user arn = %q, want %q", got, want)
	}
	u := ok1[*iam.GetUserOutput](t)(e.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("carol")}))
	if aws.ToString(out.UserId) != aws.ToString(u.User.UserId) {
		t.Errorf("user id = %q, want %q", aws.ToString(out.UserId), aws.ToString(u.User.UserId))
	}
}

func TestSignatureChecks(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()
	k := e.newUserWithKey(t, "dave")
	noRetry := func(o *sts.Options) { o.RetryMaxAttempts = 1 }

	t.Run("good key", func(t *testing.T) {
		if _, err := e.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		c := sts.NewFromConfig(sandboxtest.UserConfig(t, e.s, aws.ToString(k.AccessKeyId), "wrong-secret"), noRetry)
		_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		expectCode(t, err, "SignatureDoesNotMatch")
		ic := iam.NewFromConfig(sandboxtest.UserConfig(t, e.s, aws.ToString(k.AccessKeyId), "wrong-secret"))
		_, err = ic.GetUser(ctx, &iam.GetUserInput{})
		expectCode(t, err, "SignatureDoesNotMatch")
	})
	t.Run("wrong admin secret", func(t *testing.T) {
		c := sts.NewFromConfig(sandboxtest.UserConfig(t, e.s, "test", "nope"), noRetry)
		_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		expectCode(t, err, "SignatureDoesNotMatch")
	})
	t.Run("unknown key", func(t *testing.T) {
		c := sts.NewFromConfig(sandboxtest.UserConfig(t, e.s, "AKIAUNKNOWNUNKNOWN22", "x"), noRetry)
		_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		expectCode(t, err, "InvalidClientTokenId")
	})
	t.Run("inactive key", func(t *testing.T) {
		if _, err := e.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("dave"), AccessKeyId: k.AccessKeyId, Status: iamtypes.StatusTypeInactive}); err != nil {
			t.Fatal(err)
		}
		_, err := e.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		expectCode(t, err, "InvalidClientTokenId")
		if _, err := e.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("dave"), AccessKeyId: k.AccessKeyId, Status: iamtypes.StatusTypeActive}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatalf("reactivated key: %v", err)
		}
	})
	t.Run("deleted key", func(t *testing.T) {
		if _, err := e.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("dave"), AccessKeyId: k.AccessKeyId}); err != nil {
			t.Fatal(err)
		}
		_, err := e.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		expectCode(t, err, "InvalidClientTokenId")
	})
}

func TestLastUsed(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()
	k := e.newUserWithKey(t, "erin")

	lu := ok1[*iam.GetAccessKeyLastUsedOutput](t)(e.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: k.AccessKeyId}))
	if aws.ToString(lu.UserName) != "erin" || lu.AccessKeyLastUsed.LastUsedDate != nil ||
		aws.ToString(lu.AccessKeyLastUsed.ServiceName) != "N/A" || aws.ToString(lu.AccessKeyLastUsed.Region) != "N/A" {
		t.Errorf("never used: %+v %+v", lu, lu.AccessKeyLastUsed)
	}

	e.clock.Advance(36 * time.Hour)
	if _, err := e.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatal(err)
	}
	lu = ok1[*iam.GetAccessKeyLastUsedOutput](t)(e.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: k.AccessKeyId}))
	if got, want := aws.ToTime(lu.AccessKeyLastUsed.LastUsedDate), coreEpoch.Add(36*time.Hour); !got.Equal(want) {
		t.Errorf("last used = %v, want %v", got, want)
	}
	if got := aws.ToString(lu.AccessKeyLastUsed.ServiceName); got != "sts" {
		t.Errorf("service = %q, want sts", got)
	}
	if got := aws.ToString(lu.AccessKeyLastUsed.Region); got != "us-east-1" {
		t.Errorf("region = %q, want us-east-1", got)
	}
	_, err := e.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String("AKIAAAAAAAAAAAAAAAAA")})
	expectCode(t, err, "NoSuchEntity")
}

func TestPropagationDelay(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{Faults: sandbox.Faults{PropagationDelay: 10 * time.Second}})
	ctx := context.Background()
	k := e.newUserWithKey(t, "frank")
	c := e.userSTS(t, k)
	_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	expectCode(t, err, "InvalidClientTokenId")
	e.clock.Advance(9 * time.Second)
	_, err = c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	expectCode(t, err, "InvalidClientTokenId")
	e.clock.Advance(time.Second)
	if _, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("after the delay: %v", err)
	}
}

// TestPropagationDelayIsFixedWhenTheKeyIsCreated: raising the delay later
// does not withdraw a key STS already accepts (IAM never does); a key made
// after the change waits the new delay.
func TestPropagationDelayIsFixedWhenTheKeyIsCreated(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{Faults: sandbox.Faults{PropagationDelay: 2 * time.Second}})
	ctx := context.Background()
	old := e.newUserWithKey(t, "grace")
	e.clock.Advance(2 * time.Second)
	if _, err := e.userSTS(t, old).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("old key after its delay: %v", err)
	}
	e.s.SetFaults(sandbox.Faults{PropagationDelay: 30 * time.Second})
	if _, err := e.userSTS(t, old).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("old key after the delay was raised: %v", err)
	}
	out := ok1[*iam.CreateAccessKeyOutput](t)(e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("grace")}))
	fresh := e.userSTS(t, out.AccessKey)
	e.clock.Advance(29 * time.Second)
	_, err := fresh.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	expectCode(t, err, "InvalidClientTokenId")
	e.s.SetFaults(sandbox.Faults{}) // lowering it does not hurry the new key either
	_, err = fresh.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	expectCode(t, err, "InvalidClientTokenId")
	e.clock.Advance(time.Second)
	if _, err := fresh.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("new key after its 30 s: %v", err)
	}
}
