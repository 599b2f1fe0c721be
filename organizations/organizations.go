// Package organizations lists the member accounts keyrot works in, from AWS
// Organizations: every ACTIVE account of the organization, or those under
// some organizational units (at any depth), less the excluded ones.
package organizations

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsorg "github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/organizations/types"
)

// API is the part of the Organizations client the inventory calls, with
// the SDK's own signatures.
type API interface {
	ListAccounts(ctx context.Context, in *awsorg.ListAccountsInput, optFns ...func(*awsorg.Options)) (*awsorg.ListAccountsOutput, error)
	ListAccountsForParent(ctx context.Context, in *awsorg.ListAccountsForParentInput, optFns ...func(*awsorg.Options)) (*awsorg.ListAccountsForParentOutput, error)
	ListChildren(ctx context.Context, in *awsorg.ListChildrenInput, optFns ...func(*awsorg.Options)) (*awsorg.ListChildrenOutput, error)
}

var _ API = (*awsorg.Client)(nil)

// Account is a member account.
type Account struct {
	ID   string
	Name string
}

// Inventory lists the accounts of an organization. It is called from the
// management account (or a delegated administrator) and is safe for
// concurrent use.
type Inventory struct {
	API API
	// OUs, if set, limits the inventory to the accounts under these
	// organizational units or roots, at any depth.
	OUs []string
	// Exclude leaves these account ids out.
	Exclude []string
}

// maxDepth bounds the walk of nested OUs (Organizations allows five levels
// under a root); a deeper tree is a loop in a faulty answer.
const maxDepth = 8

// Accounts returns the ACTIVE accounts selected, sorted by id, each once.
// Suspended, closing and still-joining accounts are left out: keyrot could
// not work in them.
func (inv *Inventory) Accounts(ctx context.Context) ([]Account, error) {
	var raw []types.Account
	if len(inv.OUs) == 0 {
		p := awsorg.NewListAccountsPaginator(inv.API, &awsorg.ListAccountsInput{})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("organizations: list accounts: %w", err)
			}
			raw = append(raw, page.Accounts...)
		}
	} else {
		for _, ou := range inv.OUs {
			got, err := inv.under(ctx, ou, 0)
			if err != nil {
				return nil, err
			}
			raw = append(raw, got...)
		}
	}
	var out []Account
	for _, a := range raw {
		id := aws.ToString(a.Id)
		if !active(a) || slices.Contains(inv.Exclude, id) || slices.ContainsFunc(out, func(o Account) bool { return o.ID == id }) {
			continue
		}
		out = append(out, Account{ID: id, Name: aws.ToString(a.Name)})
	}
	slices.SortFunc(out, func(a, b Account) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

// errTooDeep: the OU tree goes deeper than Organizations allows.
var errTooDeep = errors.New("organizational units nested deeper than Organizations allows")

// under lists the accounts directly in parent and in its child OUs.
func (inv *Inventory) under(ctx context.Context, parent string, depth int) ([]types.Account, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("organizations: list accounts under %q: %w", parent, errTooDeep)
	}
	var out []types.Account
	ap := awsorg.NewListAccountsForParentPaginator(inv.API, &awsorg.ListAccountsForParentInput{ParentId: aws.String(parent)})
	for ap.HasMorePages() {
		page, err := ap.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("organizations: list accounts for parent %q: %w", parent, err)
		}
		out = append(out, page.Accounts...)
	}
	cp := awsorg.NewListChildrenPaginator(inv.API, &awsorg.ListChildrenInput{ParentId: aws.String(parent), ChildType: types.ChildTypeOrganizationalUnit})
	for cp.HasMorePages() {
		page, err := cp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("organizations: list organizational units under %q: %w", parent, err)
		}
		for _, c := range page.Children {
			got, err := inv.under(ctx, aws.ToString(c.Id), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
	}
	return out, nil
}

// active reports whether keyrot can work in a: its State (or, from an
// older endpoint without State, its Status) is ACTIVE.
func active(a types.Account) bool {
	if a.State != "" {
		return a.State == types.AccountStateActive
	}
	return a.Status == types.AccountStatusActive
}
