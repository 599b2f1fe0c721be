// The Secrets Manager service's secrets: creating, describing, updating,
// tagging and deleting them, and their resource policies.

package sandbox

import (
	"fmt"
	"slices"
	"time"
)

func checkName(name string) *apiError {
	if name == "" {
		return smValidation("name", "Member must have length greater than or equal to 1")
	}
	if len(name) > 512 {
		return smValidation("name", "Member must have length less than or equal to 512")
	}
	if !smNameRE.MatchString(name) {
		return errorf(400, "InvalidParameterException",
			"Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@")
	}
	return nil
}

type smSecretRef struct {
	ARN       string
	Name      string
	VersionID string `json:"VersionId,omitempty"`
}

// ref names the secret in an operation's output.
func (st *smSecretState) ref() smSecretRef {
	return smSecretRef{ARN: st.ARN, Name: st.Name}
}

func (m *secretsManager) createSecret(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		Name                        string
		ClientRequestToken          string
		Description                 string
		KmsKeyID                    string `json:"KmsKeyId"`
		SecretString                *string
		SecretBinary                []byte
		Tags                        []smTag
		ForceOverwriteReplicaSecret bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkName(in.Name); err != nil {
		return nil, err
	}
	if err := checkToken(in.ClientRequestToken); err != nil {
		return nil, err
	}
	if len(in.Description) > 2048 {
		return nil, smValidation("description", "Member must have length less than or equal to 2048")
	}
	if err := checkValue(in.SecretString, in.SecretBinary, false); err != nil {
		return nil, err
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	if err := m.checkKMSKey(in.KmsKeyID); err != nil {
		return nil, err
	}
	tags := mergeTags(nil, in.Tags)
	if len(tags) > smMaxTags {
		return nil, errorf(400, "InvalidParameterException", "A secret can have at most %d tags.", smMaxTags)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.secrets[in.Name]; old != nil {
		old.mu.Lock()
		if old.expired(c.now) {
			m.removeLocked(old)
			c.dirty = true
		} else {
			defer old.mu.Unlock()
			if !old.st.Deleted.IsZero() {
				return nil, errorf(400, "InvalidRequestException",
					"You can't create this secret because a secret with this name is already scheduled for deletion.")
			}
			// A retry of the same request (same token, same value) succeeds.
			if v := old.st.Versions[in.ClientRequestToken]; in.ClientRequestToken != "" && v != nil &&
				sameValue(v, in.SecretString, in.SecretBinary) {
				return smSecretRef{ARN: old.st.ARN, Name: old.st.Name, VersionID: v.ID}, nil
			}
			return nil, errorf(400, "ResourceExistsException", "The operation failed because the secret %s already exists.", in.Name)
		}
		old.mu.Unlock()
	}
	arn := ""
	for arn == "" || m.byARN[arn] != nil {
		arn = fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", m.region, m.accountID, in.Name, m.suffix())
	}
	s := &smSecret{st: smSecretState{
		ARN:         arn,
		Name:        in.Name,
		Description: in.Description,
		KmsKeyID:    in.KmsKeyID,
		Tags:        tags,
		Created:     c.now,
		LastChanged: c.now,
		Versions:    map[string]*smVer{},
		Stages:      map[string]string{},
	}}
	out := smSecretRef{ARN: arn, Name: in.Name}
	if in.SecretString != nil || in.SecretBinary != nil {
		id := in.ClientRequestToken
		if id == "" {
			id = m.uuid()
		}
		v := &smVer{ID: id, String: in.SecretString, Binary: in.SecretBinary}
		if err := s.st.addVersion(v, []string{stageCurrent}, c.now); err != nil {
			return nil, err
		}
		out.VersionID = id
	}
	m.secrets[in.Name] = s
	m.byARN[arn] = s
	c.dirty = true
	return out, nil
}

type smDescribeOutput struct {
	ARN                string
	Name               string
	Description        string              `json:",omitempty"`
	KmsKeyID           string              `json:"KmsKeyId,omitempty"`
	Tags               []smTag             `json:",omitempty"`
	VersionIdsToStages map[string][]string `json:",omitempty"`
	CreatedDate        *epochSeconds       `json:",omitempty"`
	LastChangedDate    *epochSeconds       `json:",omitempty"`
	LastAccessedDate   *epochSeconds       `json:",omitempty"`
	DeletedDate        *epochSeconds       `json:",omitempty"`
}

func (st *smSecretState) describe() smDescribeOutput {
	return smDescribeOutput{
		ARN:                st.ARN,
		Name:               st.Name,
		Description:        st.Description,
		KmsKeyID:           st.KmsKeyID,
		Tags:               slices.Clone(st.Tags),
		VersionIdsToStages: st.stagesByVersion(),
		CreatedDate:        smTime(st.Created),
		LastChangedDate:    smTime(st.LastChanged),
		LastAccessedDate:   smTime(st.LastAccessed),
		DeletedDate:        smTime(st.Deleted),
	}
}

type smSecretIDInput struct {
	SecretID string `json:"SecretId"`
}

// secretByID decodes the input of an operation that takes only a SecretId and
// returns the secret locked, as access does.
func (m *secretsManager) secretByID(c *smCall, body []byte, allowDeleted bool) (*smSecret, *apiError) {
	var in smSecretIDInput
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	return m.access(c, in.SecretID, allowDeleted)
}

func (m *secretsManager) describeSecret(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.st.describe(), nil
}

func (m *secretsManager) updateSecret(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID           string `json:"SecretId"`
		ClientRequestToken string
		Description        *string
		KmsKeyID           *string `json:"KmsKeyId"`
		SecretString       *string
		SecretBinary       []byte
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkToken(in.ClientRequestToken); err != nil {
		return nil, err
	}
	if err := checkValue(in.SecretString, in.SecretBinary, false); err != nil {
		return nil, err
	}
	if in.Description != nil && len(*in.Description) > 2048 {
		return nil, smValidation("description", "Member must have length less than or equal to 2048")
	}
	if in.KmsKeyID != nil {
		if err := m.checkKMSKey(*in.KmsKeyID); err != nil {
			return nil, err
		}
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := s.st.ref()
	if in.SecretString != nil || in.SecretBinary != nil {
		put, err := m.putValue(c, s, in.ClientRequestToken, in.SecretString, in.SecretBinary, []string{stageCurrent})
		if err != nil {
			return nil, err
		}
		out.VersionID = put.VersionID
	}
	if in.Description != nil {
		s.st.Description = *in.Description
	}
	if in.KmsKeyID != nil {
		s.st.KmsKeyID = *in.KmsKeyID
	}
	c.touch(&s.st)
	return out, nil
}

func (m *secretsManager) tagResource(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID string `json:"SecretId"`
		Tags     []smTag
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.Tags == nil {
		return nil, smValidation("tags", "Member must not be null")
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	tags := mergeTags(s.st.Tags, in.Tags)
	if len(tags) > smMaxTags {
		return nil, errorf(400, "InvalidParameterException", "A secret can have at most %d tags.", smMaxTags)
	}
	s.st.Tags = tags
	c.touch(&s.st)
	return struct{}{}, nil
}

func (m *secretsManager) untagResource(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID string `json:"SecretId"`
		TagKeys  []string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.TagKeys == nil {
		return nil, smValidation("tagKeys", "Member must not be null")
	}
	for i, k := range in.TagKeys {
		if k == "" || len(k) > 128 {
			return nil, smValidation(fmt.Sprintf("tagKeys.%d.member", i+1), "Member must have length between 1 and 128")
		}
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.st.Tags = slices.DeleteFunc(slices.Clone(s.st.Tags), func(t smTag) bool { return slices.Contains(in.TagKeys, t.Key) })
	c.touch(&s.st)
	return struct{}{}, nil
}

func (m *secretsManager) putResourcePolicy(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID          string `json:"SecretId"`
		ResourcePolicy    string
		BlockPublicPolicy bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.ResourcePolicy == "" || len(in.ResourcePolicy) > 20480 {
		return nil, smValidation("resourcePolicy", "Member must have length between 1 and 20480")
	}
	p, perr := parseSMPolicy(in.ResourcePolicy)
	if perr != nil {
		return nil, errorf(400, "MalformedPolicyDocumentException", "This resource policy contains an unsupported or malformed element: %v", perr)
	}
	if in.BlockPublicPolicy && p.public() {
		return nil, errorf(400, "PublicPolicyException", "This resource policy will grant public access to the secret.")
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.st.Policy, s.policy = in.ResourcePolicy, p
	c.touch(&s.st)
	return s.st.ref(), nil
}

func (m *secretsManager) getResourcePolicy(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return struct {
		ARN            string
		Name           string
		ResourcePolicy string `json:",omitempty"`
	}{s.st.ARN, s.st.Name, s.st.Policy}, nil
}

func (m *secretsManager) deleteResourcePolicy(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.st.Policy, s.policy = "", nil
	c.touch(&s.st)
	return s.st.ref(), nil
}

type smDeleteOutput struct {
	ARN          string
	Name         string
	DeletionDate *epochSeconds
}

func (m *secretsManager) deleteSecret(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID                   string `json:"SecretId"`
		RecoveryWindowInDays       *int
		ForceDeleteWithoutRecovery bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.ForceDeleteWithoutRecovery && in.RecoveryWindowInDays != nil {
		return nil, errorf(400, "InvalidParameterException",
			"You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
	}
	days := smDefaultRecovery
	if in.RecoveryWindowInDays != nil {
		days = *in.RecoveryWindowInDays
		if days < 7 || days > 30 {
			return nil, errorf(400, "InvalidParameterException",
				"The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
		}
	}
	s, err := m.access(c, in.SecretID, true)
	if err != nil {
		return nil, err
	}
	if !in.ForceDeleteWithoutRecovery {
		defer s.mu.Unlock()
		if !s.st.Deleted.IsZero() {
			return nil, smMarkedForDeletion()
		}
		s.st.Deleted = c.now
		s.st.DeletionDate = c.now.AddDate(0, 0, days)
		c.touch(&s.st)
		return smDeleteOutput{s.st.ARN, s.st.Name, smTime(s.st.DeletionDate)}, nil
	}
	arn, name := s.st.ARN, s.st.Name
	s.mu.Unlock()
	m.remove(c, s)
	c.dirty = true
	return smDeleteOutput{arn, name, smTime(c.now)}, nil
}

func (m *secretsManager) restoreSecret(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if !s.st.Deleted.IsZero() {
		s.st.Deleted, s.st.DeletionDate = time.Time{}, time.Time{}
		c.touch(&s.st)
	}
	return s.st.ref(), nil
}
