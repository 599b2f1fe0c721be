// Package iam implements keyrot.KeyManager on AWS IAM and keyrot.KeyVerifier
// on AWS STS, with the AWS SDK for Go v2.
package iam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
	"golang.org/x/time/rate"

	"github.com/keyrot/keyrot"
)

// API is the part of the IAM client keyrot uses, with the SDK's signatures.
type API interface {
	ListUsers(ctx context.Context, in *iam.ListUsersInput, optFns ...func(*iam.Options)) (*iam.ListUsersOutput, error)
	GetUser(ctx context.Context, in *iam.GetUserInput, optFns ...func(*iam.Options)) (*iam.GetUserOutput, error)
	ListUserTags(ctx context.Context, in *iam.ListUserTagsInput, optFns ...func(*iam.Options)) (*iam.ListUserTagsOutput, error)
	GetGroup(ctx context.Context, in *iam.GetGroupInput, optFns ...func(*iam.Options)) (*iam.GetGroupOutput, error)
	ListAccessKeys(ctx context.Context, in *iam.ListAccessKeysInput, optFns ...func(*iam.Options)) (*iam.ListAccessKeysOutput, error)
	CreateAccessKey(ctx context.Context, in *iam.CreateAccessKeyInput, optFns ...func(*iam.Options)) (*iam.CreateAccessKeyOutput, error)
	UpdateAccessKey(ctx context.Context, in *iam.UpdateAccessKeyInput, optFns ...func(*iam.Options)) (*iam.UpdateAccessKeyOutput, error)
	DeleteAccessKey(ctx context.Context, in *iam.DeleteAccessKeyInput, optFns ...func(*iam.Options)) (*iam.DeleteAccessKeyOutput, error)
	GetAccessKeyLastUsed(ctx context.Context, in *iam.GetAccessKeyLastUsedInput, optFns ...func(*iam.Options)) (*iam.GetAccessKeyLastUsedOutput, error)
	GetAccountAuthorizationDetails(ctx context.Context, in *iam.GetAccountAuthorizationDetailsInput, optFns ...func(*iam.Options)) (*iam.GetAccountAuthorizationDetailsOutput, error)
	GenerateCredentialReport(ctx context.Context, in *iam.GenerateCredentialReportInput, optFns ...func(*iam.Options)) (*iam.GenerateCredentialReportOutput, error)
	GetCredentialReport(ctx context.Context, in *iam.GetCredentialReportInput, optFns ...func(*iam.Options)) (*iam.GetCredentialReportOutput, error)
}

var (
	_ keyrot.KeyManager = (*KeyManager)(nil)
	_ keyrot.FleetKeys  = (*KeyManager)(nil)
)

// KeyManager manages access keys through IAM. Every IAM call, including
// each page of a listing, first waits on one shared rate limiter: IAM
// throttles per account and publishes no rate.
type KeyManager struct {
	api     API
	limiter *rate.Limiter
}

// New returns a KeyManager. limiter may be nil for no limit.
func New(api API, limiter *rate.Limiter) *KeyManager {
	if limiter == nil {
		limiter = rate.NewLimiter(rate.Inf, 1)
	}
	return &KeyManager{api: api, limiter: limiter}
}

// wait takes a token from the shared limiter; it comes before every call
// and every page.
func (m *KeyManager) wait(ctx context.Context) error {
	if err := m.limiter.Wait(ctx); err != nil {
		if ctx.Err() == nil {
			// The wait would outlast the deadline: say so the way a
			// deadline does, so the caller leaves the work for later.
			return fmt.Errorf("iam: rate limiter: %v: %w", err, context.DeadlineExceeded)
		}
		return fmt.Errorf("iam: rate limiter: %w", err)
	}
	return nil
}

// ListUsers lists every user under pathPrefix, following every page.
func (m *KeyManager) ListUsers(ctx context.Context, pathPrefix string) ([]keyrot.User, error) {
	in := &iam.ListUsersInput{}
	if pathPrefix != "" {
		in.PathPrefix = aws.String(pathPrefix)
	}
	var users []keyrot.User
	p := iam.NewListUsersPaginator(m.api, in)
	for p.HasMorePages() {
		if err := m.wait(ctx); err != nil {
			return nil, err
		}
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("iam: list users under %q: %w", pathPrefix, err)
		}
		for _, u := range out.Users {
			users = append(users, userFrom(u))
		}
	}
	return users, nil
}

// GetUser returns the user with its tags (all pages of them).
func (m *KeyManager) GetUser(ctx context.Context, name string) (keyrot.User, error) {
	if err := m.wait(ctx); err != nil {
		return keyrot.User{}, err
	}
	out, err := m.api.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(name)})
	if err != nil {
		return keyrot.User{}, fmt.Errorf("iam: get user %q: %w", name, classify(err, keyrot.ErrUserNotFound))
	}
	u := userFrom(*out.User)
	// GetUser returns tags, but only the first page of them when there are many.
	if len(u.Tags) >= 50 {
		p := iam.NewListUserTagsPaginator(m.api, &iam.ListUserTagsInput{UserName: aws.String(name)})
		for p.HasMorePages() {
			if err := m.wait(ctx); err != nil {
				return keyrot.User{}, err
			}
			page, err := p.NextPage(ctx)
			if err != nil {
				return keyrot.User{}, fmt.Errorf("iam: list tags of user %q: %w", name, classify(err, keyrot.ErrUserNotFound))
			}
			for _, t := range page.Tags {
				u.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
		}
	}
	return u, nil
}

func userFrom(u types.User) keyrot.User {
	out := keyrot.User{Name: aws.ToString(u.UserName), ARN: aws.ToString(u.Arn), Path: aws.ToString(u.Path), Tags: map[string]string{}}
	for _, t := range u.Tags {
		out.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

// GroupMembers lists the users of an IAM group, following every page.
func (m *KeyManager) GroupMembers(ctx context.Context, group string) ([]string, error) {
	var names []string
	p := iam.NewGetGroupPaginator(m.api, &iam.GetGroupInput{GroupName: aws.String(group)})
	for p.HasMorePages() {
		if err := m.wait(ctx); err != nil {
			return nil, err
		}
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("iam: get group %q: %w", group, classify(err, keyrot.ErrUserNotFound))
		}
		for _, u := range out.Users {
			names = append(names, aws.ToString(u.UserName))
		}
	}
	return names, nil
}

// ListAccessKeys lists the user's keys, oldest first.
func (m *KeyManager) ListAccessKeys(ctx context.Context, user string) ([]keyrot.AccessKey, error) {
	var keys []keyrot.AccessKey
	p := iam.NewListAccessKeysPaginator(m.api, &iam.ListAccessKeysInput{UserName: aws.String(user)})
	for p.HasMorePages() {
		if err := m.wait(ctx); err != nil {
			return nil, err
		}
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("iam: list access keys of user %q: %w", user, classify(err, keyrot.ErrUserNotFound))
		}
		for _, k := range out.AccessKeyMetadata {
			keys = append(keys, keyrot.AccessKey{
				ID:         aws.ToString(k.AccessKeyId),
				UserName:   aws.ToString(k.UserName),
				Status:     keyrot.KeyStatus(k.Status),
				CreateDate: aws.ToTime(k.CreateDate),
			})
		}
	}
	slices.SortStableFunc(keys, func(a, b keyrot.AccessKey) int { return a.CreateDate.Compare(b.CreateDate) })
	return keys, nil
}

// CreateAccessKey creates a key; the secret is only in this response.
func (m *KeyManager) CreateAccessKey(ctx context.Context, user string) (keyrot.Credentials, error) {
	if err := m.wait(ctx); err != nil {
		return keyrot.Credentials{}, err
	}
	out, err := m.api.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(user)})
	if err != nil {
		if code := errorCode(err); code == "LimitExceeded" {
			return keyrot.Credentials{}, fmt.Errorf("iam: create access key for user %q: %w (%w)", user, keyrot.ErrKeyLimit, err)
		}
		return keyrot.Credentials{}, fmt.Errorf("iam: create access key for user %q: %w", user, classify(err, keyrot.ErrUserNotFound))
	}
	k := out.AccessKey
	return keyrot.Credentials{
		UserName:        aws.ToString(k.UserName),
		AccessKeyID:     aws.ToString(k.AccessKeyId),
		SecretAccessKey: aws.ToString(k.SecretAccessKey),
		CreateDate:      aws.ToTime(k.CreateDate),
	}, nil
}

// SetKeyStatus activates or deactivates a key.
func (m *KeyManager) SetKeyStatus(ctx context.Context, user, keyID string, status keyrot.KeyStatus) error {
	if err := m.wait(ctx); err != nil {
		return err
	}
	_, err := m.api.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(user), AccessKeyId: aws.String(keyID), Status: types.StatusType(status)})
	if err != nil {
		return fmt.Errorf("iam: set key %s of user %q %s: %w", keyID, user, status, classify(err, keyrot.ErrKeyNotFound))
	}
	return nil
}

// DeleteAccessKey deletes a key.
func (m *KeyManager) DeleteAccessKey(ctx context.Context, user, keyID string) error {
	if err := m.wait(ctx); err != nil {
		return err
	}
	_, err := m.api.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(user), AccessKeyId: aws.String(keyID)})
	if err != nil {
		return fmt.Errorf("iam: delete key %s of user %q: %w", keyID, user, classify(err, keyrot.ErrKeyNotFound))
	}
	return nil
}

// KeyLastUsed returns when the key was last used; zero if never.
func (m *KeyManager) KeyLastUsed(ctx context.Context, keyID string) (time.Time, error) {
	if err := m.wait(ctx); err != nil {
		return time.Time{}, err
	}
	out, err := m.api.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(keyID)})
	if err != nil {
		return time.Time{}, fmt.Errorf("iam: last use of key %s: %w", keyID, classify(err, keyrot.ErrKeyNotFound))
	}
	if out.AccessKeyLastUsed == nil {
		return time.Time{}, nil
	}
	return aws.ToTime(out.AccessKeyLastUsed.LastUsedDate), nil
}

// classify wraps IAM's NoSuchEntity as notFound, keeping the AWS error too.
func classify(err error, notFound error) error {
	if errorCode(err) == "NoSuchEntity" {
		return fmt.Errorf("%w (%w)", notFound, err)
	}
	return err
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
