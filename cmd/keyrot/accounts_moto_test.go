package main

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awsorg "github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/keyrot/keyrot/internal/testkit/mototest"
)

// motoOrg is a moto_server of its own for the Organization test: setting
// up member accounts reopens moto's unauthenticated window, which must not
// overlap other tests' calls.
var motoOrg mototest.Shared

// TestRotateAcrossAccountsOnMoto runs the multi-account flow on moto_server.
// moto keeps a state per account and runs a call in the account of its
// credentials (assumed-role ones included), but does not enforce a role's
// trust policy and lets sts:AssumeRole of a role that does not exist
// succeed: the missing role shows on the first call made with it (moto
// answers HTTP 500), so there the account fails at its first IAM call
// rather than at AssumeRole. Its account ids are random, not the sandbox's.
func TestRotateAcrossAccountsOnMoto(t *testing.T) {
	defer motoOrg.Close()
	srv := motoOrg.Get(t)
	ctx := t.Context()
	admin := srv.Config()
	org := awsorg.NewFromConfig(admin)
	if _, err := org.CreateOrganization(ctx, &awsorg.CreateOrganizationInput{FeatureSet: orgtypes.OrganizationFeatureSetAll}); err != nil {
		t.Fatal(err)
	}
	id, secret := srv.AdminCredentials()
	f := &orgFixture{url: srv.URL, admin: admin, adminID: id, secret: secret}
	members := map[string]aws.Config{}
	for i := range 3 {
		out, err := org.CreateAccount(ctx, &awsorg.CreateAccountInput{AccountName: aws.String("member" + string(rune('1'+i))), Email: aws.String("m" + string(rune('1'+i)) + "@example.com")})
		if err != nil {
			t.Fatal(err)
		}
		acct := aws.ToString(out.CreateAccountStatus.AccountId)
		cfg, err := srv.MemberConfig(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		members[acct] = cfg
		f.accounts = append(f.accounts, acct)
		client := awsiam.NewFromConfig(cfg)
		trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + mototest.AccountID + `:root"},"Action":"sts:AssumeRole"}]}`
		if _, err := client.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String("keyrot-member"), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
			t.Fatal(err)
		}
		const all = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
		if _, err := client.PutRolePolicy(ctx, &awsiam.PutRolePolicyInput{RoleName: aws.String("keyrot-member"), PolicyName: aws.String("keyrot"), PolicyDocument: aws.String(all)}); err != nil {
			t.Fatal(err)
		}
	}
	f.member = func(t *testing.T, acct string) aws.Config { return members[acct] }
	f.removeRole = func(t *testing.T, acct string) {
		client := awsiam.NewFromConfig(members[acct])
		if _, err := client.DeleteRolePolicy(t.Context(), &awsiam.DeleteRolePolicyInput{RoleName: aws.String("keyrot-member"), PolicyName: aws.String("keyrot")}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.DeleteRole(t.Context(), &awsiam.DeleteRoleInput{RoleName: aws.String("keyrot-member")}); err != nil {
			t.Fatal(err)
		}
	}
	rotateAcrossAccounts(t, f)
}
