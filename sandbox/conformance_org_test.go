package sandbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/keyrot/keyrot/sandbox"
)

// The Organization cases. The sandbox serves a fixed Organization (member-1
// in the prod OU); moto builds one: the first case creates the organization
// (one per moto server, shared by the cases), and each case its own OU and
// member account.

// orgMember is a member account a case works in, and its OU.
type orgMember struct{ account, ou string }

// sandboxMember is the sandbox's member-1.
func sandboxMember(context.Context, *testing.T, *backend) orgMember {
	return orgMember{account: member1ID, ou: "ou-root-prod0001"}
}

// motoMember creates an OU and a member account in it on moto.
func motoMember(ctx context.Context, t *testing.T, b *backend) orgMember {
	t.Helper()
	_, err := b.org.CreateOrganization(ctx, &organizations.CreateOrganizationInput{FeatureSet: orgtypes.OrganizationFeatureSetAll})
	var already *orgtypes.AlreadyInOrganizationException
	if err != nil && !errors.As(err, &already) {
		t.Fatalf("moto: create organization: %v", err)
	}
	root := must[*organizations.ListRootsOutput](t, b, "list roots")(b.org.ListRoots(ctx, &organizations.ListRootsInput{})).Roots[0].Id
	ou := must[*organizations.CreateOrganizationalUnitOutput](t, b, "create OU")(b.org.CreateOrganizationalUnit(ctx,
		&organizations.CreateOrganizationalUnitInput{ParentId: root, Name: aws.String(b.n("prod"))})).OrganizationalUnit.Id
	status := must[*organizations.CreateAccountOutput](t, b, "create account")(b.org.CreateAccount(ctx,
		&organizations.CreateAccountInput{AccountName: aws.String(b.n("member")), Email: aws.String(b.n("member") + "@example.com")})).CreateAccountStatus
	account := aws.ToString(status.AccountId)
	must[*organizations.MoveAccountOutput](t, b, "move account")(b.org.MoveAccount(ctx,
		&organizations.MoveAccountInput{AccountId: aws.String(account), SourceParentId: root, DestinationParentId: ou}))
	return orgMember{account: account, ou: aws.ToString(ou)}
}

// assume assumes role in account with the admin's credentials.
func (b *backend) assume(ctx context.Context, account, role string) (*sts.AssumeRoleOutput, error) {
	return b.sts.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + account + ":role/" + role), RoleSessionName: aws.String("conformance"),
	})
}

// session is a config signed with temporary credentials.
func (b *backend) session(c *types.Credentials, token string) aws.Config {
	cfg := b.user(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey))
	cfg.Credentials = aws.NewCredentialsCache(staticSession{c, token})
	return cfg
}

// staticSession provides one set of temporary credentials, with token in
// place of the session token.
type staticSession struct {
	c     *types.Credentials
	token string
}

func (s staticSession) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: aws.ToString(s.c.AccessKeyId), SecretAccessKey: aws.ToString(s.c.SecretAccessKey), SessionToken: s.token}, nil
}

func orgCases() []conformanceCase {
	return []conformanceCase{
		{name: "organizations/the member account is listed under its OU", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			m := b.member(ctx, t, b)
			under := must[*organizations.ListAccountsForParentOutput](t, b, "list for parent")(b.org.ListAccountsForParent(ctx,
				&organizations.ListAccountsForParentInput{ParentId: aws.String(m.ou)}))
			var ids []string
			for _, a := range under.Accounts {
				ids = append(ids, strings.ReplaceAll(aws.ToString(a.Id), m.account, "<member>"))
				f.set("state", a.State)
				f.set("arn ends with the id", strings.HasSuffix(aws.ToString(a.Arn), "/"+aws.ToString(a.Id)))
			}
			f.set("accounts under the OU", ids)
			children := must[*organizations.ListChildrenOutput](t, b, "list children")(b.org.ListChildren(ctx,
				&organizations.ListChildrenInput{ParentId: aws.String(m.ou), ChildType: orgtypes.ChildTypeAccount}))
			f.set("children of the OU", len(children.Children) == 1 && aws.ToString(children.Children[0].Id) == m.account)

			page := must[*organizations.ListAccountsOutput](t, b, "list accounts")(b.org.ListAccounts(ctx, &organizations.ListAccountsInput{MaxResults: aws.Int32(1)}))
			f.set("a page of 1", len(page.Accounts))
			f.set("a page of 1 has a NextToken", page.NextToken != nil)
			var all []string
			p := organizations.NewListAccountsPaginator(b.org, &organizations.ListAccountsInput{MaxResults: aws.Int32(20)})
			for p.HasMorePages() {
				out := must[*organizations.ListAccountsOutput](t, b, "list accounts page")(p.NextPage(ctx))
				for _, a := range out.Accounts {
					all = append(all, aws.ToString(a.Id))
				}
			}
			desc := must[*organizations.DescribeOrganizationOutput](t, b, "describe")(b.org.DescribeOrganization(ctx, &organizations.DescribeOrganizationInput{}))
			f.set("ListAccounts has the management account", strings.Contains(strings.Join(all, ","), aws.ToString(desc.Organization.MasterAccountId)))
			f.set("ListAccounts has the member", strings.Contains(strings.Join(all, ","), m.account))
			f.set("management account", aws.ToString(desc.Organization.MasterAccountId))

			_, err := b.org.ListAccountsForParent(ctx, &organizations.ListAccountsForParentInput{ParentId: aws.String("ou-zzzz-zzzzzzzz")})
			f.outcome("unknown parent", err)
		}},
		{name: "sts/AssumeRole works in the member account", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			m := b.member(ctx, t, b)
			out, err := b.assume(ctx, m.account, sandbox.MemberRoleName)
			f.outcome("assume", err)
			if err != nil {
				return
			}
			f.set("key prefix", aws.ToString(out.Credentials.AccessKeyId)[:4])
			f.set("assumed role ARN", strings.ReplaceAll(aws.ToString(out.AssumedRoleUser.Arn), m.account, "<member>"))
			f.set("role id prefix", aws.ToString(out.AssumedRoleUser.AssumedRoleId)[:4])
			f.set("expires in an hour", recent(aws.ToTime(out.Credentials.Expiration)))
			cfg := b.session(out.Credentials, aws.ToString(out.Credentials.SessionToken))
			who, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			f.outcome("caller identity", err)
			if err == nil {
				f.set("caller ARN is the assumed role's", aws.ToString(who.Arn) == aws.ToString(out.AssumedRoleUser.Arn))
				f.set("caller account is the member", aws.ToString(who.Account) == m.account)
			}
		}},
		{name: "secretsmanager/a secret created with a member session", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			m := b.member(ctx, t, b)
			out := must[*sts.AssumeRoleOutput](t, b, "assume")(b.assume(ctx, m.account, sandbox.MemberRoleName))
			cfg := b.session(out.Credentials, aws.ToString(out.Credentials.SessionToken))
			_, err := secretsmanager.NewFromConfig(cfg).CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(b.n("member-secret")), SecretString: aws.String("v")})
			f.outcome("create secret in the member", err)
		}, diverges: map[string]divergence{"create secret in the member": {sandbox: "ok", moto: "undecodable error 500", entry: "D12"}}},
		{name: "sts/AssumeRole of a role the member account lacks", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			m := b.member(ctx, t, b)
			_, err := b.assume(ctx, m.account, "keyrot-absent")
			f.outcome("assume", err)
		}, diverges: map[string]divergence{"assume": {sandbox: "AccessDenied 403", moto: "ok", entry: "D11"}}},
		{name: "sts/a session's key with a forged token", run: func(ctx context.Context, t *testing.T, b *backend, f *facts) {
			m := b.member(ctx, t, b)
			out := must[*sts.AssumeRoleOutput](t, b, "assume")(b.assume(ctx, m.account, sandbox.MemberRoleName))
			_, err := sts.NewFromConfig(b.session(out.Credentials, "IQoJforged")).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			f.outcome("with a forged token", err)
			_, err = sts.NewFromConfig(b.session(out.Credentials, "")).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			f.outcome("without a token", err)
		}},
	}
}
