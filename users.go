// Which IAM users the rotator manages: the selection by name, tag and path,
// and the exemptions.

package keyrot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
)

// UserSelector says which IAM users keyrot manages and which it exempts.
type UserSelector struct {
	// Names are managed by name.
	Names []string
	// Tag manages every user carrying it: "key=value", or "key" for any value.
	Tag string
	// PathPrefix limits tag selection (and named users) to an IAM path.
	PathPrefix string
	// ExemptGroup: members of this IAM group are skipped and listed as exempt.
	ExemptGroup string
	// ExemptTag: users carrying this tag ("key=value" or "key") are exempt.
	ExemptTag string
}

// ResolvedUser is a managed user, as the selector found it.
type ResolvedUser struct {
	User         User
	Missing      bool // named in the config but not in IAM
	Exempt       bool
	ExemptReason string
}

// ResolveUsers lists the managed users: the named ones and, if a tag is
// configured, every user under the path prefix carrying it, with exemptions
// marked. Named users missing from IAM are returned with Missing set.
func (r *Rotator) ResolveUsers(ctx context.Context) ([]ResolvedUser, error) {
	return r.resolveUsers(ctx, nil)
}

// resolveUsers resolves the managed users, or only those named in only
// (without listing every IAM user: a pass for the users due now costs IAM
// calls for those users alone).
func (r *Rotator) resolveUsers(ctx context.Context, only []string) ([]ResolvedUser, error) {
	sel := r.cfg.Users
	candidates := slices.Clone(sel.Names)
	named := map[string]bool{}
	for _, n := range sel.Names {
		named[n] = true
	}
	if len(only) > 0 {
		candidates = slices.Clone(only)
	} else if sel.Tag != "" {
		all, err := r.cfg.Keys.ListUsers(ctx, sel.PathPrefix)
		if err != nil {
			return nil, fmt.Errorf("keyrot: list users: %w", err)
		}
		for _, u := range all {
			if !named[u.Name] {
				candidates = append(candidates, u.Name)
			}
		}
	}
	exemptMembers := map[string]bool{}
	if sel.ExemptGroup != "" {
		members, err := r.cfg.Keys.GroupMembers(ctx, sel.ExemptGroup)
		if err != nil {
			return nil, fmt.Errorf("keyrot: read exempt group %q: %w", sel.ExemptGroup, err)
		}
		for _, m := range members {
			exemptMembers[m] = true
		}
	}
	out := make([]ResolvedUser, len(candidates))
	keep := make([]bool, len(candidates))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Concurrency)
	for i, name := range candidates {
		g.Go(func() error {
			u, err := r.cfg.Keys.GetUser(gctx, name)
			switch {
			case errors.Is(err, ErrUserNotFound):
				out[i], keep[i] = ResolvedUser{User: User{Name: name}, Missing: true}, named[name]
				return nil
			case err != nil:
				return fmt.Errorf("keyrot: get user %q: %w", name, err)
			}
			out[i], keep[i] = r.resolveUser(u, named[name], exemptMembers[name])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var users []ResolvedUser
	for i, u := range out {
		if keep[i] {
			users = append(users, u)
		}
	}
	slices.SortFunc(users, func(a, b ResolvedUser) int { return strings.Compare(a.User.Name, b.User.Name) })
	return users, nil
}

// resolveUser applies the selector to one IAM user: whether it is managed
// (named, or tagged under the path prefix) and whether it is exempt.
func (r *Rotator) resolveUser(u User, named, inExemptGroup bool) (ResolvedUser, bool) {
	sel := r.cfg.Users
	if !named && !tagMatches(u.Tags, sel.Tag) {
		return ResolvedUser{}, false
	}
	if sel.PathPrefix != "" && !strings.HasPrefix(u.Path, sel.PathPrefix) {
		return ResolvedUser{}, false
	}
	res := ResolvedUser{User: u}
	switch {
	case inExemptGroup:
		res.Exempt, res.ExemptReason = true, "member of group "+sel.ExemptGroup
	case sel.ExemptTag != "" && tagMatches(u.Tags, sel.ExemptTag):
		res.Exempt, res.ExemptReason = true, "tagged "+sel.ExemptTag
	}
	return res, true
}

// tagMatches reports whether tags carry want ("key=value", or "key" for any value).
func tagMatches(tags map[string]string, want string) bool {
	if want == "" {
		return false
	}
	k, v, hasValue := strings.Cut(want, "=")
	got, ok := tags[k]
	return ok && (!hasValue || got == v)
}
