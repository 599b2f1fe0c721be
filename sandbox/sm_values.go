// The Secrets Manager service's versions and values: staging labels,
// reads (GetSecretValue, BatchGetSecretValue, ListSecretVersionIds) and
// writes (PutSecretValue, UpdateSecretVersionStage).

package sandbox

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"
)

// stagesByVersion inverts the label map.
func (st *smSecretState) stagesByVersion() map[string][]string {
	out := make(map[string][]string, len(st.Stages))
	for label, id := range st.Stages {
		out[id] = append(out[id], label)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func (st *smSecretState) stagesOf(id string) []string {
	var out []string
	for label, vid := range st.Stages {
		if vid == id {
			out = append(out, label)
		}
	}
	slices.Sort(out)
	return out
}

// moveLabel attaches label to version id in stages, moving AWSCURRENT's old
// holder to AWSPREVIOUS as AWS does.
func moveLabel(stages map[string]string, label, id string) {
	if label == stageCurrent {
		if old, ok := stages[stageCurrent]; ok && old != id {
			stages[stagePrevious] = old
		}
	}
	stages[label] = id
}

// addVersion stores a new version with the given labels, enforcing the
// version quota: unlabelled versions beyond smMaxVersions are pruned oldest
// first, but never one younger than smMinVersionAge; if that is not enough
// the write fails with LimitExceededException and nothing changes.
func (st *smSecretState) addVersion(v *smVer, labels []string, now time.Time) *apiError {
	stages := maps.Clone(st.Stages)
	if stages == nil {
		stages = map[string]string{}
	}
	for _, l := range labels {
		moveLabel(stages, l, v.ID)
	}
	var prune []*smVer
	if excess := len(st.Versions) + 1 - smMaxVersions; excess > 0 {
		labelled := map[string]bool{}
		for _, id := range stages {
			labelled[id] = true
		}
		var candidates []*smVer
		for _, old := range st.Versions {
			if !labelled[old.ID] && now.Sub(old.Created) >= smMinVersionAge {
				candidates = append(candidates, old)
			}
		}
		if len(candidates) < excess {
			return errorf(400, "LimitExceededException",
				"You have exceeded the maximum number of versions (%d) for secret %s. Secrets Manager doesn't remove versions created less than 24 hours ago; write new versions less often.",
				smMaxVersions, st.Name)
		}
		slices.SortFunc(candidates, func(a, b *smVer) int { return int(a.Seq - b.Seq) })
		prune = candidates[:excess]
	}
	for _, old := range prune {
		delete(st.Versions, old.ID)
	}
	if st.Versions == nil {
		st.Versions = map[string]*smVer{}
	}
	st.Seq++
	v.Seq = st.Seq
	v.Created = now
	st.Versions[v.ID] = v
	st.Stages = stages
	st.LastChanged = now
	return nil
}

func sameValue(v *smVer, str *string, bin []byte) bool {
	if (v.String == nil) != (str == nil) {
		return false
	}
	if str != nil && *v.String != *str {
		return false
	}
	return bytes.Equal(v.Binary, bin) && (v.Binary == nil) == (bin == nil)
}

type smValueOutput struct {
	ARN           string
	Name          string
	VersionID     string        `json:"VersionId"`
	SecretString  *string       `json:",omitempty"`
	SecretBinary  []byte        `json:",omitempty"`
	VersionStages []string      `json:",omitempty"`
	CreatedDate   *epochSeconds `json:",omitempty"`
}

// readValue returns a version's value and records the access. s.mu held.
func (st *smSecretState) readValue(c *smCall, versionID, stage string) (smValueOutput, *apiError) {
	if versionID == "" && stage == "" {
		stage = stageCurrent
	}
	var v *smVer
	if versionID != "" {
		v = st.Versions[versionID]
		if v == nil {
			return smValueOutput{}, errorf(400, "ResourceNotFoundException",
				"Secrets Manager can't find the specified secret value for VersionId: %s", versionID)
		}
		if stage != "" && st.Stages[stage] != versionID {
			return smValueOutput{}, errorf(400, "ResourceNotFoundException",
				"Secrets Manager can't find the specified secret value for VersionId: %s and staging label: %s", versionID, stage)
		}
	} else {
		v = st.Versions[st.Stages[stage]]
		if v == nil {
			return smValueOutput{}, errorf(400, "ResourceNotFoundException",
				"Secrets Manager can't find the specified secret value for staging label: %s", stage)
		}
	}
	day := c.now.UTC().Truncate(24 * time.Hour)
	if !st.LastAccessed.Equal(day) {
		st.LastAccessed = day
		c.dirty = true
	}
	if !v.LastAccessed.Equal(day) {
		v.LastAccessed = day
		c.dirty = true
	}
	return smValueOutput{
		ARN:           st.ARN,
		Name:          st.Name,
		VersionID:     v.ID,
		SecretString:  v.String,
		SecretBinary:  v.Binary,
		VersionStages: st.stagesOf(v.ID),
		CreatedDate:   smTime(v.Created),
	}, nil
}

func (m *secretsManager) getSecretValue(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID     string `json:"SecretId"`
		VersionID    string `json:"VersionId"`
		VersionStage string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out, err := s.st.readValue(c, in.VersionID, in.VersionStage)
	if err != nil {
		return nil, err
	}
	return out, nil
}

type smPutOutput struct {
	ARN           string
	Name          string
	VersionID     string   `json:"VersionId"`
	VersionStages []string `json:",omitempty"`
}

// putValue creates a version, or accepts an idempotent retry. s.mu held.
func (m *secretsManager) putValue(c *smCall, s *smSecret, token string, str *string, bin []byte, labels []string) (smPutOutput, *apiError) {
	if token != "" {
		if v := s.st.Versions[token]; v != nil {
			if !sameValue(v, str, bin) {
				return smPutOutput{}, errorf(400, "ResourceExistsException",
					"You can't modify an existing version, you can only create a new version.")
			}
			return smPutOutput{ARN: s.st.ARN, Name: s.st.Name, VersionID: v.ID, VersionStages: s.st.stagesOf(v.ID)}, nil
		}
	}
	id := token
	for id == "" || s.st.Versions[id] != nil {
		id = m.uuid()
	}
	// AWS: "If this operation creates the first version for the secret,
	// then Secrets Manager automatically attaches the staging label
	// AWSCURRENT to it", whatever VersionStages says.
	if len(s.st.Versions) == 0 && !slices.Contains(labels, stageCurrent) {
		labels = append(slices.Clone(labels), stageCurrent)
	}
	if err := s.st.addVersion(&smVer{ID: id, String: str, Binary: bin}, labels, c.now); err != nil {
		return smPutOutput{}, err
	}
	c.dirty = true
	return smPutOutput{ARN: s.st.ARN, Name: s.st.Name, VersionID: id, VersionStages: s.st.stagesOf(id)}, nil
}

func checkStages(labels []string) *apiError {
	if len(labels) > smMaxStagesPerVer {
		return smValidation("versionStages", fmt.Sprintf("Member must have length less than or equal to %d", smMaxStagesPerVer))
	}
	for _, l := range labels {
		if l == "" || len(l) > 256 {
			return smValidation("versionStages", "Member must have length between 1 and 256")
		}
	}
	return nil
}

func (m *secretsManager) putSecretValue(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID           string `json:"SecretId"`
		ClientRequestToken string
		SecretString       *string
		SecretBinary       []byte
		VersionStages      []string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkToken(in.ClientRequestToken); err != nil {
		return nil, err
	}
	if err := checkValue(in.SecretString, in.SecretBinary, true); err != nil {
		return nil, err
	}
	if err := checkStages(in.VersionStages); err != nil {
		return nil, err
	}
	labels := in.VersionStages
	if labels == nil {
		labels = []string{stageCurrent}
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out, err := m.putValue(c, s, in.ClientRequestToken, in.SecretString, in.SecretBinary, labels)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (m *secretsManager) updateSecretVersionStage(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID            string `json:"SecretId"`
		VersionStage        string
		MoveToVersionID     string `json:"MoveToVersionId"`
		RemoveFromVersionID string `json:"RemoveFromVersionId"`
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.VersionStage == "" || len(in.VersionStage) > 256 {
		return nil, smValidation("versionStage", "Member must have length between 1 and 256")
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	st := &s.st
	for _, id := range []string{in.MoveToVersionID, in.RemoveFromVersionID} {
		if id != "" && st.Versions[id] == nil {
			return nil, errorf(400, "InvalidParameterException", "Secrets Manager can't find the specified secret version: %s", id)
		}
	}
	holder, held := st.Stages[in.VersionStage]
	if in.RemoveFromVersionID != "" && holder != in.RemoveFromVersionID {
		return nil, errorf(400, "InvalidParameterException",
			"The staging label %s isn't attached to version %s, so it can't be removed from it.", in.VersionStage, in.RemoveFromVersionID)
	}
	if held && in.MoveToVersionID != "" && holder != in.MoveToVersionID && in.RemoveFromVersionID == "" {
		return nil, errorf(400, "InvalidParameterException",
			"The parameter RemoveFromVersionId can't be empty. Staging label %s is currently attached to version %s, so you must explicitly reference that version in RemoveFromVersionId.",
			in.VersionStage, holder)
	}
	if in.MoveToVersionID == "" && in.RemoveFromVersionID == "" {
		return nil, errorf(400, "InvalidParameterException", "You must specify MoveToVersionId, RemoveFromVersionId, or both.")
	}
	if in.MoveToVersionID == "" && in.VersionStage == stageCurrent {
		return nil, errorf(400, "InvalidParameterException",
			"You can't remove the staging label AWSCURRENT from a version without moving it to another version.")
	}
	if in.MoveToVersionID != "" {
		if holder != in.MoveToVersionID {
			moveLabel(st.Stages, in.VersionStage, in.MoveToVersionID)
		}
	} else {
		delete(st.Stages, in.VersionStage)
	}
	c.touch(st)
	return st.ref(), nil
}

type smVersionEntry struct {
	VersionID        string        `json:"VersionId"`
	VersionStages    []string      `json:",omitempty"`
	CreatedDate      *epochSeconds `json:",omitempty"`
	LastAccessedDate *epochSeconds `json:",omitempty"`
	KmsKeyIDs        []string      `json:"KmsKeyIds,omitempty"`
}

func (m *secretsManager) listSecretVersionIds(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID          string `json:"SecretId"`
		MaxResults        *int
		NextToken         string
		IncludeDeprecated bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	offset, size, err := smPage(in.NextToken, in.MaxResults, smMaxListResults, smMaxListResults)
	if err != nil {
		return nil, err
	}
	s, err := m.access(c, in.SecretID, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	st := &s.st
	byVer := st.stagesByVersion()
	vers := slices.SortedFunc(maps.Values(st.Versions), func(a, b *smVer) int { return int(b.Seq - a.Seq) })
	kms := st.KmsKeyID
	if kms == "" {
		kms = "DEFAULT"
	}
	var all []smVersionEntry
	for _, v := range vers {
		if byVer[v.ID] == nil && !in.IncludeDeprecated {
			continue
		}
		all = append(all, smVersionEntry{
			VersionID:        v.ID,
			VersionStages:    byVer[v.ID],
			CreatedDate:      smTime(v.Created),
			LastAccessedDate: smTime(v.LastAccessed),
			KmsKeyIDs:        []string{kms},
		})
	}
	out := struct {
		ARN       string
		Name      string
		Versions  []smVersionEntry
		NextToken string `json:",omitempty"`
	}{ARN: st.ARN, Name: st.Name, Versions: []smVersionEntry{}}
	out.Versions, out.NextToken = smPageOf(all, offset, size)
	return out, nil
}

type smBatchError struct {
	SecretID  string `json:"SecretId"`
	ErrorCode string
	Message   string
}

func (m *secretsManager) batchGetSecretValue(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretIDList []string `json:"SecretIdList"`
		Filters      []smFilter
		MaxResults   *int
		NextToken    string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if (in.SecretIDList == nil) == (in.Filters == nil) {
		return nil, errorf(400, "InvalidParameterException", "You must include Filters or SecretIdList, but not both.")
	}
	if in.SecretIDList != nil && (in.MaxResults != nil || in.NextToken != "") {
		return nil, errorf(400, "InvalidParameterException", "MaxResults and NextToken can only be used with Filters.")
	}
	if len(in.SecretIDList) > smMaxBatchSecretID {
		return nil, smValidation("secretIdList", fmt.Sprintf("Member must have length less than or equal to %d", smMaxBatchSecretID))
	}
	if err := checkFilters(in.Filters); err != nil {
		return nil, err
	}
	out := struct {
		SecretValues []smValueOutput
		Errors       []smBatchError `json:",omitempty"`
		NextToken    string         `json:",omitempty"`
	}{SecretValues: []smValueOutput{}}
	ids := in.SecretIDList
	if in.Filters != nil {
		offset, size, err := smPage(in.NextToken, in.MaxResults, smMaxBatchResults, smMaxBatchResults)
		if err != nil {
			return nil, err
		}
		list := m.selectSecrets(c, in.Filters, false)
		sortSecretList(list, createdDate, false)
		var page []smListEntry
		page, out.NextToken = smPageOf(list, offset, size)
		ids = nil
		for _, e := range page {
			ids = append(ids, e.ARN)
		}
	}
	for _, id := range ids {
		s, err := m.access(c, id, false)
		if err == nil {
			var v smValueOutput
			v, err = s.st.readValue(c, "", "")
			s.mu.Unlock()
			if err == nil {
				out.SecretValues = append(out.SecretValues, v)
				continue
			}
		}
		out.Errors = append(out.Errors, smBatchError{SecretID: id, ErrorCode: err.Code, Message: err.Message})
	}
	return out, nil
}
