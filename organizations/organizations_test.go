package organizations_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsorg "github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/keyrot/keyrot/internal/testkit/mototest"
	"github.com/keyrot/keyrot/organizations"
)

var moto mototest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	moto.Close()
	os.Exit(code)
}

// TestInventoryOnMoto walks a real Organizations API (moto_server, through
// the SDK): the whole organization, then OUs nested two deep, with an
// account excluded.
func TestInventoryOnMoto(t *testing.T) {
	srv := moto.Get(t)
	ctx := t.Context()
	client := awsorg.NewFromConfig(srv.Config())
	if _, err := client.CreateOrganization(ctx, &awsorg.CreateOrganizationInput{FeatureSet: types.OrganizationFeatureSetAll}); err != nil {
		t.Fatal(err)
	}
	roots, err := client.ListRoots(ctx, &awsorg.ListRootsInput{})
	if err != nil {
		t.Fatal(err)
	}
	root := aws.ToString(roots.Roots[0].Id)
	ou := func(parent, name string) string {
		out, err := client.CreateOrganizationalUnit(ctx, &awsorg.CreateOrganizationalUnitInput{ParentId: aws.String(parent), Name: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.OrganizationalUnit.Id)
	}
	account := func(name, parent string) string {
		out, err := client.CreateAccount(ctx, &awsorg.CreateAccountInput{AccountName: aws.String(name), Email: aws.String(name + "@example.com")})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.CreateAccountStatus.AccountId)
		if parent != root {
			if _, err := client.MoveAccount(ctx, &awsorg.MoveAccountInput{AccountId: aws.String(id), SourceParentId: aws.String(root), DestinationParentId: aws.String(parent)}); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	prod := ou(root, "prod")
	prodEU := ou(prod, "prod-eu")
	dev := ou(root, "dev")
	inRoot := account("in-root", root)
	inProd := account("in-prod", prod)
	inProdEU := account("in-prod-eu", prodEU)
	inDev := account("in-dev", dev)

	ids := func(inv *organizations.Inventory) []string {
		t.Helper()
		got, err := inv.Accounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range got {
			out = append(out, a.ID)
		}
		return out
	}
	all := ids(&organizations.Inventory{API: client})
	for _, id := range []string{inRoot, inProd, inProdEU, inDev, mototest.AccountID} {
		if !slices.Contains(all, id) {
			t.Errorf("organization: %v lacks %s", all, id)
		}
	}
	if !slices.IsSorted(all) {
		t.Errorf("not sorted: %v", all)
	}
	got := ids(&organizations.Inventory{API: client, OUs: []string{prod}, Exclude: []string{inProd}})
	if want := []string{inProdEU}; !slices.Equal(got, want) {
		t.Errorf("under prod, excluding %s: %v, want %v (the nested OU's account)", inProd, got, want)
	}
	got = ids(&organizations.Inventory{API: client, OUs: []string{prodEU, prod, dev}})
	want := []string{inProd, inProdEU, inDev}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("under prod-eu, prod and dev: %v, want %v, each once", got, want)
	}
}

// fakeAPI serves ListAccounts from a fixed page set.
type fakeAPI struct {
	organizations.API
	pages [][]types.Account
}

func (f *fakeAPI) ListAccounts(_ context.Context, in *awsorg.ListAccountsInput, _ ...func(*awsorg.Options)) (*awsorg.ListAccountsOutput, error) {
	i := 0
	if in.NextToken != nil {
		i = int(aws.ToString(in.NextToken)[0] - '0')
	}
	out := &awsorg.ListAccountsOutput{Accounts: f.pages[i]}
	if i+1 < len(f.pages) {
		out.NextToken = aws.String(string(rune('0' + i + 1)))
	}
	return out, nil
}

func TestInventoryKeepsActiveAccountsOfEveryPage(t *testing.T) {
	acct := func(id string, state types.AccountState, status types.AccountStatus) types.Account {
		return types.Account{Id: aws.String(id), Name: aws.String("n" + id), State: state, Status: status}
	}
	api := &fakeAPI{pages: [][]types.Account{
		{acct("100000000003", types.AccountStateActive, ""), acct("100000000004", types.AccountStateSuspended, "")},
		{acct("100000000001", "", types.AccountStatusActive), acct("100000000005", types.AccountStatePendingClosure, types.AccountStatusActive)},
		{acct("100000000006", types.AccountStateClosed, ""), acct("100000000002", types.AccountStateActive, "")},
	}}
	got, err := (&organizations.Inventory{API: api, Exclude: []string{"100000000002"}}).Accounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []organizations.Account{{ID: "100000000001", Name: "n100000000001"}, {ID: "100000000003", Name: "n100000000003"}}
	if !slices.Equal(got, want) {
		t.Errorf("accounts = %v, want %v (active ones, every page, sorted, excluded left out)", got, want)
	}
}
