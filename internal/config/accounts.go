package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// Accounts selects the AWS accounts keyrot works in. Without ids or
// organization keyrot works in the account of its own credentials only.
type Accounts struct {
	// Role is the IAM role keyrot assumes in each account (name, not ARN).
	Role string `yaml:"role"`
	// ExternalID is passed with every sts:AssumeRole, when set (not printed).
	ExternalID string `yaml:"external_id,omitempty" hidden:"true"`
	// IDs are the accounts to work in (12 digits each).
	IDs []string `yaml:"ids,omitempty"`
	// Organization works in every ACTIVE account of the AWS Organization.
	Organization bool `yaml:"organization,omitempty"`
	// OUs limits organization to the accounts under these OUs (or roots), at any depth.
	OUs []string `yaml:"ous,omitempty"`
	// Exclude leaves these accounts out of organization.
	Exclude []string `yaml:"exclude,omitempty"`
	// Concurrency bounds how many accounts one process works at once.
	Concurrency int `yaml:"concurrency"`
}

// DefaultMemberRole is the role keyrot assumes in each member account.
const DefaultMemberRole = "keyrot-member"

// Enabled reports whether keyrot works across accounts.
func (s Accounts) Enabled() bool { return len(s.IDs) > 0 || s.Organization }

var (
	accountID  = regexp.MustCompile(`^[0-9]{12}$`)
	roleName   = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	externalID = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	// An OU id (ou-xxxx-yyyyyyyy) or a root id (r-xxxx).
	parentID = regexp.MustCompile(`^(ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}|r-[0-9a-z]{4,32})$`)
)

// validate checks the section; Config.Validate calls it.
func (s Accounts) validate() error {
	if !roleName.MatchString(s.Role) {
		return &Error{Field: "accounts.role", Value: s.Role, Reason: "not a valid IAM role name (1-64 of letters, digits and +=,.@_-)"}
	}
	if n := len(s.ExternalID); n > 0 && (n < 2 || n > 1224 || !externalID.MatchString(s.ExternalID)) {
		// The value is not echoed: some treat it as a shared secret.
		return &Error{Field: "accounts.external_id", Reason: "must be 2-1224 of letters, digits and +=,.@:/_-"}
	}
	if s.Concurrency < 1 || s.Concurrency > 64 {
		return &Error{Field: "accounts.concurrency", Value: strconv.Itoa(s.Concurrency), Reason: "must be 1 to 64"}
	}
	if len(s.IDs) > 0 && s.Organization {
		return &Error{Field: "accounts.ids", Reason: "set accounts.ids or accounts.organization: true, not both"}
	}
	if err := accountList("accounts.ids", s.IDs); err != nil {
		return err
	}
	if !s.Organization {
		if len(s.OUs) > 0 {
			return &Error{Field: "accounts.ous", Reason: "only with accounts.organization: true"}
		}
		if len(s.Exclude) > 0 {
			return &Error{Field: "accounts.exclude", Reason: "only with accounts.organization: true (list the accounts you want in accounts.ids)"}
		}
	}
	for i, ou := range s.OUs {
		if !parentID.MatchString(ou) {
			return &Error{Field: fmt.Sprintf("accounts.ous[%d]", i), Value: ou, Reason: "not an OU id (ou-xxxx-xxxxxxxx) or root id (r-xxxx)"}
		}
	}
	return accountList("accounts.exclude", s.Exclude)
}

// accountList checks a list of account ids: 12 digits, no repeats.
func accountList(field string, ids []string) error {
	for i, id := range ids {
		if !accountID.MatchString(id) {
			return &Error{Field: fmt.Sprintf("%s[%d]", field, i), Value: id, Reason: "an AWS account id is 12 digits"}
		}
		if slices.Index(ids, id) != i {
			return &Error{Field: fmt.Sprintf("%s[%d]", field, i), Value: id, Reason: "listed twice"}
		}
	}
	return nil
}
