package sandbox_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

const (
	mgmtID    = "123456789012"
	member1ID = "100000000001"
	member2ID = "100000000002"
	member3ID = "100000000003"
)

func newOrgEnv(t *testing.T, members int) *coreEnv {
	t.Helper()
	return newCoreEnv(t, sandbox.Options{MemberAccounts: members})
}

// adminDo sends an admin request and returns its status.
func adminDo(t *testing.T, method, url, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	status, _ := doRaw(t, req)
	return status
}

func TestOrganizationListing(t *testing.T) {
	e := newOrgEnv(t, 3)
	ctx := context.Background()
	org := organizations.NewFromConfig(sandboxtest.Config(t, e.s))

	want := []sandbox.Account{
		{ID: mgmtID, Name: "management", OU: "r-root", Management: true},
		{ID: member1ID, Name: "member-1", OU: "ou-root-prod0001"},
		{ID: member2ID, Name: "member-2", OU: "ou-root-dev00001"},
		{ID: member3ID, Name: "member-3", OU: "ou-root-prod0001"},
	}
	var listed []sandbox.Account
	sandboxtest.GetJSON(t, e.s.URL()+"/_sandbox/accounts", &listed)
	if !slices.Equal(listed, want) {
		t.Errorf("GET /_sandbox/accounts = %+v, want %+v", listed, want)
	}

	// ListAccounts, one account a page: the paginator follows NextToken.
	var ids []string
	p := organizations.NewListAccountsPaginator(org, &organizations.ListAccountsInput{MaxResults: aws.Int32(1)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, a := range out.Accounts {
			ids = append(ids, aws.ToString(a.Id))
			if a.State != orgtypes.AccountStateActive || a.JoinedTimestamp == nil || !strings.HasSuffix(aws.ToString(a.Arn), "/"+aws.ToString(a.Id)) {
				t.Errorf("account %+v", a)
			}
		}
	}
	if want := []string{mgmtID, member1ID, member2ID, member3ID}; !slices.Equal(ids, want) || pages != 4 {
		t.Errorf("ListAccounts = %v in %d pages, want %v in 4", ids, pages, want)
	}

	roots := ok1[*organizations.ListRootsOutput](t)(org.ListRoots(ctx, &organizations.ListRootsInput{}))
	if len(roots.Roots) != 1 || aws.ToString(roots.Roots[0].Id) != "r-root" {
		t.Fatalf("roots = %+v", roots.Roots)
	}
	ous := ok1[*organizations.ListOrganizationalUnitsForParentOutput](t)(org.ListOrganizationalUnitsForParent(ctx,
		&organizations.ListOrganizationalUnitsForParentInput{ParentId: aws.String("r-root")}))
	var ouNames []string
	for _, u := range ous.OrganizationalUnits {
		ouNames = append(ouNames, aws.ToString(u.Id)+"="+aws.ToString(u.Name))
	}
	if want := []string{"ou-root-prod0001=prod", "ou-root-dev00001=dev"}; !slices.Equal(ouNames, want) {
		t.Errorf("OUs = %v, want %v", ouNames, want)
	}
	prod := ok1[*organizations.ListAccountsForParentOutput](t)(org.ListAccountsForParent(ctx,
		&organizations.ListAccountsForParentInput{ParentId: aws.String("ou-root-prod0001")}))
	var prodIDs []string
	for _, a := range prod.Accounts {
		prodIDs = append(prodIDs, aws.ToString(a.Id))
	}
	if want := []string{member1ID, member3ID}; !slices.Equal(prodIDs, want) {
		t.Errorf("prod accounts = %v, want %v", prodIDs, want)
	}
	children := func(parent string, typ orgtypes.ChildType) []string {
		out := ok1[*organizations.ListChildrenOutput](t)(org.ListChildren(ctx, &organizations.ListChildrenInput{ParentId: aws.String(parent), ChildType: typ}))
		var got []string
		for _, c := range out.Children {
			got = append(got, aws.ToString(c.Id))
		}
		return got
	}
	if got := children("r-root", orgtypes.ChildTypeAccount); !slices.Equal(got, []string{mgmtID}) {
		t.Errorf("accounts under the root = %v", got)
	}
	if got := children("r-root", orgtypes.ChildTypeOrganizationalUnit); len(got) != 2 {
		t.Errorf("OUs under the root = %v", got)
	}
	if got := children("ou-root-dev00001", orgtypes.ChildTypeAccount); !slices.Equal(got, []string{member2ID}) {
		t.Errorf("accounts under dev = %v", got)
	}
	desc := ok1[*organizations.DescribeOrganizationOutput](t)(org.DescribeOrganization(ctx, &organizations.DescribeOrganizationInput{}))
	if aws.ToString(desc.Organization.MasterAccountId) != mgmtID || !strings.HasPrefix(aws.ToString(desc.Organization.Id), "o-") {
		t.Errorf("organization = %+v", desc.Organization)
	}

	_, err := org.ListAccountsForParent(ctx, &organizations.ListAccountsForParentInput{ParentId: aws.String("ou-root-nothere1")})
	expectCode(t, err, "ParentNotFoundException")
	_, err = org.ListAccounts(ctx, &organizations.ListAccountsInput{MaxResults: aws.Int32(21)})
	expectCode(t, err, "InvalidInputException")

	// A member account may describe the Organization but not list it.
	memberOrg := organizations.NewFromConfig(sandboxtest.MemberConfig(t, e.s, member1ID, ""))
	if _, err := memberOrg.DescribeOrganization(ctx, &organizations.DescribeOrganizationInput{}); err != nil {
		t.Errorf("describe from a member: %v", err)
	}
	_, err = memberOrg.ListAccounts(ctx, &organizations.ListAccountsInput{})
	expectCode(t, err, "AccessDeniedException")
}

func TestOrganizationNotInUse(t *testing.T) {
	e := newOrgEnv(t, 0)
	_, err := organizations.NewFromConfig(sandboxtest.Config(t, e.s)).ListAccounts(context.Background(), &organizations.ListAccountsInput{})
	expectCode(t, err, "AWSOrganizationsNotInUseException")
	var listed []sandbox.Account
	sandboxtest.GetJSON(t, e.s.URL()+"/_sandbox/accounts", &listed)
	if len(listed) != 1 || !listed[0].Management {
		t.Errorf("accounts of a single-account sandbox = %+v", listed)
	}
}

// TestAccountsAreApart: every call runs in the account of its credentials.
func TestAccountsAreApart(t *testing.T) {
	e := newOrgEnv(t, 2)
	ctx := context.Background()
	member := sandboxtest.MemberConfig(t, e.s, member1ID, "")

	id := ok1[*sts.GetCallerIdentityOutput](t)(sts.NewFromConfig(member).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}))
	if got, want := aws.ToString(id.Arn), "arn:aws:sts::"+member1ID+":assumed-role/keyrot-member/sandboxtest"; got != want {
		t.Errorf("caller = %q, want %q", got, want)
	}
	if aws.ToString(id.Account) != member1ID || !strings.HasPrefix(aws.ToString(id.UserId), "AROA") || !strings.HasSuffix(aws.ToString(id.UserId), ":sandboxtest") {
		t.Errorf("identity = %+v", id)
	}

	// A secret created in the member account has its ARN and is invisible
	// from the management account.
	memberSM := secretsmanager.NewFromConfig(member)
	created := ok1[*secretsmanager.CreateSecretOutput](t)(memberSM.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("keyrot/bot"), SecretString: aws.String("v1"),
	}))
	if arn := aws.ToString(created.ARN); !strings.HasPrefix(arn, "arn:aws:secretsmanager:us-east-1:"+member1ID+":secret:keyrot/bot-") {
		t.Errorf("member secret ARN = %q", arn)
	}
	mgmtSM := secretsmanager.NewFromConfig(sandboxtest.Config(t, e.s))
	_, err := mgmtSM.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("keyrot/bot")})
	expectCode(t, err, "ResourceNotFoundException")
	_, err = mgmtSM.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: created.ARN})
	expectCode(t, err, "ResourceNotFoundException")
	if l := ok1[*secretsmanager.ListSecretsOutput](t)(mgmtSM.ListSecrets(ctx, &secretsmanager.ListSecretsInput{})); len(l.SecretList) != 0 {
		t.Errorf("management account lists %d secrets", len(l.SecretList))
	}
	// The other member does not see it either.
	other := secretsmanager.NewFromConfig(sandboxtest.MemberConfig(t, e.s, member2ID, ""))
	_, err = other.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("keyrot/bot")})
	expectCode(t, err, "ResourceNotFoundException")

	// Secrets are encrypted with the account's own keys.
	_, err = memberSM.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("keyrot/other-kms"), SecretString: aws.String("v"),
		KmsKeyId: aws.String("arn:aws:kms:us-east-1:" + mgmtID + ":key/1234abcd-12ab-34cd-56ef-1234567890ab")})
	expectCode(t, err, "AccessDeniedException")
	ok1[*secretsmanager.CreateSecretOutput](t)(memberSM.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("keyrot/own-kms"), SecretString: aws.String("v"),
		KmsKeyId: aws.String("arn:aws:kms:us-east-1:" + member1ID + ":alias/keyrot")}))
	_, err = memberSM.UpdateSecret(ctx, &secretsmanager.UpdateSecretInput{SecretId: aws.String("keyrot/own-kms"),
		KmsKeyId: aws.String("arn:aws:kms:us-east-1:" + member2ID + ":alias/keyrot")})
	expectCode(t, err, "AccessDeniedException")

	// IAM users are per account; a member user's key signs in its account.
	memberIAM := iam.NewFromConfig(member)
	u := ok1[*iam.CreateUserOutput](t)(memberIAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("bot")}))
	if got, want := aws.ToString(u.User.Arn), "arn:aws:iam::"+member1ID+":user/bot"; got != want {
		t.Errorf("member user ARN = %q, want %q", got, want)
	}
	if _, err := e.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("bot")}); awsErrCode(err) != "NoSuchEntity" {
		t.Errorf("management GetUser of a member's user: %v", err)
	}
	// The same name can exist in the management account.
	e.newUserWithKey(t, "bot")
	k := ok1[*iam.CreateAccessKeyOutput](t)(memberIAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("bot")})).AccessKey
	who := ok1[*sts.GetCallerIdentityOutput](t)(e.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}))
	if aws.ToString(who.Account) != member1ID || aws.ToString(who.Arn) != "arn:aws:iam::"+member1ID+":user/bot" {
		t.Errorf("member user's key = %+v", who)
	}
	keys := e.s.IssuedKeys()
	accountsOf := map[string]string{}
	for _, ik := range keys {
		accountsOf[ik.AccessKeyID] = ik.Account
	}
	if accountsOf[aws.ToString(k.AccessKeyId)] != member1ID || len(keys) != 2 {
		t.Errorf("issued keys = %+v", keys)
	}

	// The credential report is the account's own.
	_, _ = memberIAM.GenerateCredentialReport(ctx, &iam.GenerateCredentialReportInput{})
	report := ok1[*iam.GetCredentialReportOutput](t)(memberIAM.GetCredentialReport(ctx, &iam.GetCredentialReportInput{}))
	if !strings.Contains(string(report.Content), "arn:aws:iam::"+member1ID+":user/bot") || strings.Contains(string(report.Content), mgmtID+":user/bot") {
		t.Errorf("member credential report:\n%s", report.Content)
	}

	// Emails carry the account they were sent from.
	_, err = sesv2.NewFromConfig(member).SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("keyrot@example.com"),
		Destination:      &sestypes.Destination{ToAddresses: []string{"ops@example.com"}},
		Content: &sestypes.EmailContent{Simple: &sestypes.Message{
			Subject: &sestypes.Content{Data: aws.String("s")}, Body: &sestypes.Body{Text: &sestypes.Content{Data: aws.String("b")}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if box := e.s.Outbox(); len(box) != 1 || box[0].Account != member1ID {
		t.Errorf("outbox = %+v", box)
	}
	var mine, theirs []sandbox.Email
	sandboxtest.GetJSON(t, e.s.URL()+"/_sandbox/ses/outbox?account="+member1ID, &mine)
	sandboxtest.GetJSON(t, e.s.URL()+"/_sandbox/ses/outbox?account="+mgmtID, &theirs)
	if len(mine) != 1 || len(theirs) != 0 {
		t.Errorf("outbox by account: %d from member-1, %d from the management account", len(mine), len(theirs))
	}
}

func TestAssumeRoleTrust(t *testing.T) {
	e := newOrgEnv(t, 3)
	ctx := context.Background()
	assume := func(client *sts.Client, account, externalID string) error {
		in := &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.MemberRoleARN(account)), RoleSessionName: aws.String("trust-test")}
		if externalID != "" {
			in.ExternalId = aws.String(externalID)
		}
		_, err := client.AssumeRole(ctx, in)
		return err
	}
	deniedMsg := func(t *testing.T, err error, caller, account string) {
		t.Helper()
		expectCode(t, err, "AccessDenied")
		want := "User: " + caller + " is not authorized to perform: sts:AssumeRole on resource: " + sandbox.MemberRoleARN(account)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	admin := e.sts
	root := "arn:aws:iam::" + mgmtID + ":root"

	if err := assume(admin, member1ID, ""); err != nil {
		t.Fatalf("the management account assumes a member role: %v", err)
	}
	// No role in the management account, none in an unknown account.
	deniedMsg(t, assume(admin, mgmtID, ""), root, mgmtID)
	deniedMsg(t, assume(admin, "999999999999", ""), root, "999999999999")
	_, err := admin.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + member1ID + ":role/other"), RoleSessionName: aws.String("x1")})
	expectCode(t, err, "AccessDenied")

	// A member account is not trusted by another member's role.
	fromMember := sts.NewFromConfig(sandboxtest.MemberConfig(t, e.s, member1ID, ""))
	deniedMsg(t, assume(fromMember, member2ID, ""), "arn:aws:sts::"+member1ID+":assumed-role/keyrot-member/sandboxtest", member2ID)

	// An IAM user without an identity policy may not assume it.
	k := e.newUserWithKey(t, "plain")
	deniedMsg(t, assume(e.userSTS(t, k), member1ID, ""), "arn:aws:iam::"+mgmtID+":user/plain", member1ID)

	// With an ExternalId condition, only the right one is let in.
	roleURL := e.s.URL() + "/_sandbox/accounts/" + member2ID + "/role"
	if st := adminDo(t, http.MethodPost, roleURL, `{"external_id":"ext-123"}`); st != http.StatusOK {
		t.Fatalf("POST role: %d", st)
	}
	deniedMsg(t, assume(admin, member2ID, ""), root, member2ID)
	deniedMsg(t, assume(admin, member2ID, "ext-999"), root, member2ID)
	if err := assume(admin, member2ID, "ext-123"); err != nil {
		t.Errorf("with the right ExternalId: %v", err)
	}
	var role sandbox.MemberRole
	sandboxtest.GetJSON(t, roleURL, &role)
	if role.ExternalID != "ext-123" {
		t.Errorf("GET role = %+v", role)
	}
	if st := adminDo(t, http.MethodPost, roleURL, `{"external_id":"x"}`); st != http.StatusBadRequest {
		t.Errorf("POST a one-character external id: %d, want 400", st)
	}
	if st := adminDo(t, http.MethodPost, e.s.URL()+"/_sandbox/accounts/"+mgmtID+"/role", `{}`); st != http.StatusNotFound {
		t.Errorf("POST the management account's role: %d, want 404", st)
	}

	// A deleted role: AccessDenied, as AWS words it, and its sessions lose
	// their permissions but for GetCallerIdentity; restoring it lets in.
	earlier := sandboxtest.MemberConfig(t, e.s, member3ID, "")
	if _, err := secretsmanager.NewFromConfig(earlier).ListSecrets(ctx, &secretsmanager.ListSecretsInput{}); err != nil {
		t.Fatal(err)
	}
	if st := adminDo(t, http.MethodDelete, e.s.URL()+"/_sandbox/accounts/"+member3ID+"/role", ""); st != http.StatusNoContent {
		t.Fatalf("DELETE role: %d", st)
	}
	_, err = secretsmanager.NewFromConfig(earlier).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
	expectCode(t, err, "AccessDeniedException")
	_, err = iam.NewFromConfig(earlier).ListUsers(ctx, &iam.ListUsersInput{})
	expectCode(t, err, "AccessDenied")
	if _, err := sts.NewFromConfig(earlier).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Errorf("GetCallerIdentity of a session whose role is gone: %v", err)
	}
	deniedMsg(t, assume(admin, member3ID, ""), root, member3ID)
	if st := adminDo(t, http.MethodGet, e.s.URL()+"/_sandbox/accounts/"+member3ID+"/role", ""); st != http.StatusNotFound {
		t.Errorf("GET a deleted role: %d, want 404", st)
	}
	if err := e.s.SetMemberRole(member3ID, sandbox.MemberRole{}); err != nil {
		t.Fatal(err)
	}
	if err := assume(admin, member3ID, ""); err != nil {
		t.Errorf("after the role is back: %v", err)
	}

	// DurationSeconds: at least 900, at most the role's maximum.
	for _, d := range []int32{899, 3601} {
		_, err := admin.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.MemberRoleARN(member1ID)), RoleSessionName: aws.String("d"), DurationSeconds: aws.Int32(d)})
		expectCode(t, err, "ValidationError")
	}
	_, err = admin.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.MemberRoleARN(member1ID)), RoleSessionName: aws.String("a b")})
	expectCode(t, err, "ValidationError")
}

func TestSessionTokens(t *testing.T) {
	e := newOrgEnv(t, 1)
	ctx := context.Background()
	out := ok1[*sts.AssumeRoleOutput](t)(e.sts.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(sandbox.MemberRoleARN(member1ID)), RoleSessionName: aws.String("short"), DurationSeconds: aws.Int32(900),
	}))
	c := out.Credentials
	if !strings.HasPrefix(aws.ToString(c.AccessKeyId), "ASIA") || aws.ToString(c.SessionToken) == "" {
		t.Fatalf("credentials = %+v", c)
	}
	if got, want := aws.ToTime(c.Expiration), coreEpoch.Add(900*time.Second); !got.Equal(want) {
		t.Errorf("expiration = %v, want %v", got, want)
	}
	if got := aws.ToString(out.AssumedRoleUser.Arn); got != "arn:aws:sts::"+member1ID+":assumed-role/keyrot-member/short" {
		t.Errorf("assumed role user = %q", got)
	}
	session := func(token string) aws.Config {
		return sandboxtest.SessionConfig(e.s.URL(), aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), token)
	}
	call := func(cfg aws.Config) error {
		_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	}
	listSecrets := func(cfg aws.Config) error {
		_, err := secretsmanager.NewFromConfig(cfg).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
		return err
	}
	good := session(aws.ToString(c.SessionToken))
	if err := call(good); err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	// Without the token, or with another one, the key is unknown.
	expectCode(t, call(session("")), "InvalidClientTokenId")
	expectCode(t, call(session("IQoJforged")), "InvalidClientTokenId")
	expectCode(t, listSecrets(session("")), "UnrecognizedClientException")
	// With a wrong secret the signature does not match.
	wrong := sandboxtest.SessionConfig(e.s.URL(), aws.ToString(c.AccessKeyId), "wrong", aws.ToString(c.SessionToken))
	expectCode(t, call(wrong), "SignatureDoesNotMatch")

	e.clock.Advance(899 * time.Second)
	if err := call(good); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	e.clock.Advance(time.Second)
	expectCode(t, call(good), "ExpiredToken")
	expectCode(t, listSecrets(good), "ExpiredTokenException")
	if err := call(session("IQoJforged")); awsErrCode(err) != "InvalidClientTokenId" {
		t.Errorf("forged token after expiry: %v", err)
	}
}

func TestAccountsPersist(t *testing.T) {
	dir := t.TempDir()
	clock := sandboxtest.NewClock(coreEpoch)
	ctx := context.Background()

	// A single-account state file loads into an Organization: it is the
	// management account's.
	s0, err := sandbox.New(sandbox.Options{DataDir: dir, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := s0.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ok1[*iam.CreateUserOutput](t)(iam.NewFromConfig(sandboxtest.Config(t, s0)).CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("old")}))
	if err := s0.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s1, err := sandbox.New(sandbox.Options{DataDir: dir, Clock: clock, MemberAccounts: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.NewFromConfig(sandboxtest.Config(t, s1)).GetUser(ctx, &iam.GetUserInput{UserName: aws.String("old")}); err != nil {
		t.Fatalf("management user after the upgrade: %v", err)
	}
	creds := ok1[*sts.AssumeRoleOutput](t)(sts.NewFromConfig(sandboxtest.Config(t, s1)).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(sandbox.MemberRoleARN(member1ID)), RoleSessionName: aws.String("persist"),
	})).Credentials
	ok1[*secretsmanager.CreateSecretOutput](t)(secretsmanager.NewFromConfig(sandboxtest.MemberConfig(t, s1, member1ID, "")).CreateSecret(ctx,
		&secretsmanager.CreateSecretInput{Name: aws.String("kept"), SecretString: aws.String("v")}))
	memberSQS := sqs.NewFromConfig(sandboxtest.MemberConfig(t, s1, member1ID, ""))
	q := ok1[*sqs.CreateQueueOutput](t)(memberSQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work")}))
	ok1[*sqs.SendMessageOutput](t)(memberSQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("queued")}))
	if err := s1.DeleteMemberRole(member2ID); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s2 := sandboxtest.Start(t, sandbox.Options{DataDir: dir, Clock: clock, MemberAccounts: 2})
	session := sandboxtest.SessionConfig(s2.URL(), aws.ToString(creds.AccessKeyId), aws.ToString(creds.SecretAccessKey), aws.ToString(creds.SessionToken))
	v := ok1[*secretsmanager.GetSecretValueOutput](t)(secretsmanager.NewFromConfig(session).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("kept")}))
	if aws.ToString(v.SecretString) != "v" {
		t.Errorf("member secret after restart = %q", aws.ToString(v.SecretString))
	}
	if queues := s2.SQS(); len(queues) != 1 || queues[0].Account != member1ID || len(queues[0].Messages) != 1 || queues[0].Messages[0].Body != "queued" {
		t.Errorf("queues after restart = %+v", queues)
	}
	if _, ok := s2.MemberRole(member2ID); ok {
		t.Error("a deleted role is back after a restart")
	}

	// Fewer member accounts than the state holds: a clear error, the file untouched.
	_, err = sandbox.New(sandbox.Options{DataDir: dir, Clock: clock, MemberAccounts: 1})
	if err == nil || !strings.Contains(err.Error(), member2ID) || !strings.Contains(err.Error(), "--accounts") {
		t.Errorf("loading 2 members' state with 1: %v", err)
	}
}

// TestFaultsPerAccount: a fault rule with an account fails only the calls
// that run in that account.
func TestFaultsPerAccount(t *testing.T) {
	e := newOrgEnv(t, 2)
	ctx := context.Background()
	e.s.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Account: member1ID, Service: "secretsmanager", Kind: "throttle", Count: 1}}})
	noRetry := func(o *secretsmanager.Options) { o.RetryMaxAttempts = 1 }
	list := func(account string) error {
		_, err := secretsmanager.NewFromConfig(sandboxtest.MemberConfig(t, e.s, account, ""), noRetry).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
		return err
	}
	if err := list(member2ID); err != nil {
		t.Fatalf("another member account: %v", err)
	}
	if _, err := secretsmanager.NewFromConfig(sandboxtest.Config(t, e.s), noRetry).ListSecrets(ctx, &secretsmanager.ListSecretsInput{}); err != nil {
		t.Fatalf("the management account: %v", err)
	}
	expectCode(t, list(member1ID), "ThrottlingException")
	if err := list(member1ID); err != nil {
		t.Errorf("after the rule is spent: %v", err)
	}
}

// TestSessionSecretsNotLogged: the sandbox's own logs, at debug level,
// never hold a session's secret or token.
func TestSessionSecretsNotLogged(t *testing.T) {
	var logs testkit.Buffer
	s := sandboxtest.Start(t, sandbox.Options{MemberAccounts: 1, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	out := ok1[*sts.AssumeRoleOutput](t)(sts.NewFromConfig(sandboxtest.Config(t, s)).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(sandbox.MemberRoleARN(member1ID)), RoleSessionName: aws.String("logged"),
	}))
	c := out.Credentials
	session := sandboxtest.SessionConfig(s.URL(), aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	ok1[*sts.GetCallerIdentityOutput](t)(sts.NewFromConfig(session).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}))
	_, err := iam.NewFromConfig(session).GetUser(ctx, &iam.GetUserInput{})
	expectCode(t, err, "ValidationError")
	if !strings.Contains(logs.String(), aws.ToString(c.AccessKeyId)) {
		t.Fatalf("the debug log does not show the calls:\n%s", logs.String())
	}
	for _, secret := range []string{aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a session secret:\n%s", logs.String())
		}
	}
}
