// The Secrets Manager service's ListSecrets: filters, sorting and pages.

package sandbox

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// smPage parses a NextToken (an opaque offset) and MaxResults.
func smPage(token string, maxResults *int, limit, def int) (offset, size int, err *apiError) {
	size = def
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > limit {
			return 0, 0, smValidation("maxResults", fmt.Sprintf("Member must have value between 1 and %d", limit))
		}
		size = *maxResults
	}
	if token == "" {
		return 0, size, nil
	}
	b, decErr := base64.RawURLEncoding.DecodeString(token)
	n, convErr := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
	if decErr != nil || convErr != nil || n < 0 || !strings.HasPrefix(string(b), "o:") {
		return 0, 0, errorf(400, "InvalidNextTokenException", "The NextToken value is invalid.")
	}
	return n, size, nil
}

func smNextToken(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

// smPageOf cuts the page of at most size items at offset (see smPage) out of
// list, never nil, and the NextToken of the page after it, if any.
func smPageOf[T any](list []T, offset, size int) (page []T, next string) {
	if offset >= len(list) {
		return []T{}, ""
	}
	end := min(offset+size, len(list))
	if end < len(list) {
		next = smNextToken(end)
	}
	return list[offset:end], next
}

// checkFilters validates ListSecrets/BatchGetSecretValue filters.
func checkFilters(filters []smFilter) *apiError {
	if len(filters) > 10 {
		return smValidation("filters", "Member must have length less than or equal to 10")
	}
	for i, f := range filters {
		switch f.Key {
		case "description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all":
		default:
			return smValidation(fmt.Sprintf("filters.%d.member.key", i+1),
				"Member must satisfy enum value set: [description, name, tag-key, tag-value, primary-region, owning-service, all]")
		}
		if len(f.Values) < 1 || len(f.Values) > 10 {
			return smValidation(fmt.Sprintf("filters.%d.member.values", i+1), "Member must have length between 1 and 10")
		}
		for _, v := range f.Values {
			if len(v) > 512 {
				return smValidation(fmt.Sprintf("filters.%d.member.values", i+1), "Member must have length less than or equal to 512")
			}
		}
	}
	return nil
}

// matchesFilters applies filters as AWS documents them: filters are ANDed,
// the values of one filter ORed; a value is a prefix (case-sensitive except
// for description and all); a leading "!" negates it. s.mu held.
func (m *secretsManager) matchesFilters(st *smSecretState, filters []smFilter) bool {
	for _, f := range filters {
		var attrs []string
		fold := false
		switch f.Key {
		case "name":
			attrs = []string{st.Name}
		case "description":
			attrs, fold = []string{st.Description}, true
		case "tag-key":
			for _, t := range st.Tags {
				attrs = append(attrs, t.Key)
			}
		case "tag-value":
			for _, t := range st.Tags {
				attrs = append(attrs, t.Value)
			}
		case "primary-region":
			attrs = []string{m.region}
		case "owning-service":
			attrs = nil
		case "all":
			if !matchesAll(st, f.Values) {
				return false
			}
			continue
		}
		positive, anyPositive := false, false
		for _, v := range f.Values {
			neg := strings.HasPrefix(v, "!")
			v = strings.TrimPrefix(v, "!")
			hit := false
			for _, a := range attrs {
				if fold && strings.HasPrefix(strings.ToLower(a), strings.ToLower(v)) || !fold && strings.HasPrefix(a, v) {
					hit = true
					break
				}
			}
			if neg {
				if hit {
					return false
				}
				continue
			}
			anyPositive = true
			positive = positive || hit
		}
		if anyPositive && !positive {
			return false
		}
	}
	return true
}

// matchesAll implements the "all" filter: the values are broken into words
// and each word must be a case-insensitive prefix of a word of the name,
// description, tag keys or tag values (or, negated, of none).
func matchesAll(st *smSecretState, values []string) bool {
	var words []string
	for _, a := range []string{st.Name, st.Description} {
		words = append(words, splitWords(a)...)
	}
	for _, t := range st.Tags {
		words = append(words, splitWords(t.Key)...)
		words = append(words, splitWords(t.Value)...)
	}
	hasWord := func(w string) bool {
		for _, x := range words {
			if strings.HasPrefix(x, w) {
				return true
			}
		}
		return false
	}
	anyPositive, positive := false, false
	for _, v := range values {
		neg := strings.HasPrefix(v, "!")
		for _, w := range splitWords(strings.TrimPrefix(v, "!")) {
			if neg {
				if hasWord(w) {
					return false
				}
				continue
			}
			anyPositive = true
			positive = positive || hasWord(w)
		}
	}
	return !anyPositive || positive
}

// splitWords breaks s into lowercase words at punctuation, at a change from
// lower to upper case and between letters and digits.
func splitWords(s string) []string {
	var words []string
	var cur []rune
	kind := func(r rune) int {
		switch {
		case r >= 'a' && r <= 'z':
			return 1
		case r >= 'A' && r <= 'Z':
			return 2
		case r >= '0' && r <= '9':
			return 3
		}
		return 0
	}
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	prev := 0
	for _, r := range s {
		k := kind(r)
		switch {
		case k == 0:
			flush()
		case prev == 1 && k == 2, prev == 3 && k != 3, prev != 3 && prev != 0 && k == 3:
			flush()
		}
		if k != 0 {
			cur = append(cur, r)
		}
		prev = k
	}
	flush()
	return words
}

type smListEntry struct {
	ARN                    string
	Name                   string
	Description            string              `json:",omitempty"`
	KmsKeyID               string              `json:"KmsKeyId,omitempty"`
	Tags                   []smTag             `json:",omitempty"`
	SecretVersionsToStages map[string][]string `json:",omitempty"`
	CreatedDate            *epochSeconds       `json:",omitempty"`
	LastChangedDate        *epochSeconds       `json:",omitempty"`
	LastAccessedDate       *epochSeconds       `json:",omitempty"`
	DeletedDate            *epochSeconds       `json:",omitempty"`

	created time.Time // sort keys
	changed time.Time
	access  time.Time
	src     *smSecret // described by describePage
}

// selectSecrets returns the secrets matching filters, in a stable order,
// with their state copied under each secret's lock.
func (m *secretsManager) selectSecrets(c *smCall, filters []smFilter, includeDeleted bool) []smListEntry {
	m.mu.RLock()
	all := slices.Collect(maps.Values(m.secrets))
	m.mu.RUnlock()
	var out []smListEntry
	var expired []*smSecret
	for _, s := range all {
		s.mu.Lock()
		switch {
		case s.gone:
		case s.expired(c.now):
			expired = append(expired, s)
		case !s.st.Deleted.IsZero() && !includeDeleted:
		case m.matchesFilters(&s.st, filters):
			// Only the page is described (describePage): describing every
			// match for each page made listing n secrets cost O(n²).
			out = append(out, smListEntry{ARN: s.st.ARN, Name: s.st.Name,
				created: s.st.Created, changed: s.st.LastChanged, access: s.st.LastAccessed, src: s})
		}
		s.mu.Unlock()
	}
	if len(expired) > 0 {
		m.remove(c, expired...)
	}
	return out
}

// describePage fills in the entries of one page of selectSecrets.
func describePage(page []smListEntry) []smListEntry {
	out := make([]smListEntry, len(page))
	for i, e := range page {
		e.src.mu.Lock()
		d := e.src.st.describe()
		e.src.mu.Unlock()
		out[i] = smListEntry{
			ARN: d.ARN, Name: d.Name, Description: d.Description, KmsKeyID: d.KmsKeyID, Tags: d.Tags,
			SecretVersionsToStages: d.VersionIdsToStages, CreatedDate: d.CreatedDate,
			LastChangedDate: d.LastChangedDate, LastAccessedDate: d.LastAccessedDate, DeletedDate: d.DeletedDate,
		}
	}
	return out
}

// createdDate is ListSecrets' default sort key.
func createdDate(e *smListEntry) time.Time { return e.created }

// sortSecretList orders list by key (nil: none), then by name; desc reverses
// the whole order.
func sortSecretList(list []smListEntry, key func(*smListEntry) time.Time, desc bool) {
	// By index: entries passed by value to key would each escape to the
	// heap, an allocation per comparison.
	sort.Slice(list, func(i, j int) bool {
		a, b := &list[i], &list[j]
		r := 0
		if key != nil {
			r = key(a).Compare(key(b))
		}
		if r == 0 {
			r = strings.Compare(a.Name, b.Name)
		}
		if desc {
			r = -r
		}
		return r < 0
	})
}

func (m *secretsManager) listSecrets(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		IncludePlannedDeletion bool
		MaxResults             *int
		NextToken              string
		Filters                []smFilter
		SortOrder              string
		SortBy                 string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkFilters(in.Filters); err != nil {
		return nil, err
	}
	offset, size, err := smPage(in.NextToken, in.MaxResults, smMaxListResults, smMaxListResults)
	if err != nil {
		return nil, err
	}
	if in.SortOrder != "" && in.SortOrder != "asc" && in.SortOrder != "desc" {
		return nil, smValidation("sortOrder", "Member must satisfy enum value set: [asc, desc]")
	}
	key := createdDate
	switch in.SortBy {
	case "", "created-date":
	case "last-changed-date":
		key = func(e *smListEntry) time.Time { return e.changed }
	case "last-accessed-date":
		key = func(e *smListEntry) time.Time { return e.access }
	case "name":
		key = nil
	default:
		return nil, smValidation("sortBy", "Member must satisfy enum value set: [created-date, last-accessed-date, last-changed-date, name]")
	}
	list := m.selectSecrets(c, in.Filters, in.IncludePlannedDeletion)
	sortSecretList(list, key, in.SortOrder == "desc")
	out := struct {
		SecretList []smListEntry
		NextToken  string `json:",omitempty"`
	}{SecretList: []smListEntry{}}
	var page []smListEntry
	page, out.NextToken = smPageOf(list, offset, size)
	out.SecretList = describePage(page)
	return out, nil
}
