package sandbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Organizations (JSON 1.1, target AWSOrganizationsV20161128.*): the
// sandbox's Organization, read-only, as the management account sees it.

// orgMaxResults is the largest page the List operations return (AWS's
// documented maximum for them).
const orgMaxResults = 20

type orgAccount struct {
	Arn             string        `json:"Arn"`
	Email           string        `json:"Email"`
	ID              string        `json:"Id"`
	JoinedMethod    string        `json:"JoinedMethod"`
	JoinedTimestamp *epochSeconds `json:"JoinedTimestamp"`
	Name            string        `json:"Name"`
	Paths           []string      `json:"Paths"`
	State           string        `json:"State"`
	Status          string        `json:"Status"`
}

type orgUnit struct {
	Arn  string `json:"Arn"`
	ID   string `json:"Id"`
	Name string `json:"Name"`
	Path string `json:"Path"`
}

type orgChild struct {
	ID   string `json:"Id"`
	Type string `json:"Type"`
}

type orgPageInput struct {
	ParentID   string `json:"ParentId"`
	ChildType  string `json:"ChildType"`
	MaxResults *int   `json:"MaxResults"`
	NextToken  string `json:"NextToken"`
}

// orgUnits are the Organization's OUs, under the root.
var orgUnits = []struct{ id, name string }{{orgProdOU, "prod"}, {orgDevOU, "dev"}}

func orgError(status int, code, msg string) *apiError { return errorf(status, code, "%s", msg) }

func orgNotInUse() *apiError {
	return orgError(http.StatusBadRequest, "AWSOrganizationsNotInUseException", "Your account is not a member of an organization.")
}

// handleOrganizations runs one Organizations operation for caller.
func (s *Server) handleOrganizations(caller principal, op string, body []byte) (any, *apiError) {
	o := s.org
	var in orgPageInput
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, orgError(http.StatusBadRequest, "SerializationException", "Could not parse the request body: "+err.Error())
		}
	}
	known := op == "DescribeOrganization" || op == "ListAccounts" || op == "ListAccountsForParent" ||
		op == "ListChildren" || op == "ListRoots" || op == "ListOrganizationalUnitsForParent"
	switch {
	case !known:
		return nil, orgError(http.StatusBadRequest, "UnknownOperationException", "The operation "+strconv.Quote(op)+" is not supported by the keyrot sandbox's Organizations.")
	case !o.members():
		return nil, orgNotInUse()
	case !caller.Admin:
		return nil, orgError(http.StatusBadRequest, "AccessDeniedException", "You don't have permissions to access this resource.")
	case op == "DescribeOrganization":
		return s.describeOrganization(), nil // any account of the Organization may
	case caller.Account != o.management().ID:
		return nil, orgError(http.StatusBadRequest, "AccessDeniedException", "You don't have permissions to access this resource.")
	}
	switch op {
	case "ListRoots":
		roots := []map[string]any{{"Arn": s.orgARN("root", orgRootID), "Id": orgRootID, "Name": "Root", "PolicyTypes": []any{}}}
		return orgPage(in, "Roots", roots)
	case "ListAccounts":
		return orgPage(in, "Accounts", s.orgAccounts(""))
	case "ListAccountsForParent":
		if err := checkParent(in.ParentID); err != nil {
			return nil, err
		}
		return orgPage(in, "Accounts", s.orgAccounts(in.ParentID))
	case "ListOrganizationalUnitsForParent":
		if err := checkParent(in.ParentID); err != nil {
			return nil, err
		}
		var ous []orgUnit
		if in.ParentID == orgRootID {
			for _, u := range orgUnits {
				ous = append(ous, orgUnit{Arn: s.orgARN("ou", u.id), ID: u.id, Name: u.name, Path: o.id + "/" + orgRootID + "/" + u.id + "/"})
			}
		}
		return orgPage(in, "OrganizationalUnits", ous)
	default: // ListChildren
		if err := checkParent(in.ParentID); err != nil {
			return nil, err
		}
		var children []orgChild
		switch in.ChildType {
		case "ACCOUNT":
			for _, a := range s.orgAccounts(in.ParentID) {
				children = append(children, orgChild{ID: a.ID, Type: "ACCOUNT"})
			}
		case "ORGANIZATIONAL_UNIT":
			if in.ParentID == orgRootID {
				for _, u := range orgUnits {
					children = append(children, orgChild{ID: u.id, Type: "ORGANIZATIONAL_UNIT"})
				}
			}
		default:
			return nil, orgError(http.StatusBadRequest, "InvalidInputException", "You provided a value that does not match the required pattern: ChildType must be ACCOUNT or ORGANIZATIONAL_UNIT.")
		}
		return orgPage(in, "Children", children)
	}
}

// checkParent answers ParentNotFoundException for a parent that is neither
// the root nor one of the OUs.
func checkParent(id string) *apiError {
	if id == "" {
		return orgError(http.StatusBadRequest, "InvalidInputException", "You must specify a value for ParentId.")
	}
	if id == orgRootID {
		return nil
	}
	for _, u := range orgUnits {
		if u.id == id {
			return nil
		}
	}
	return orgError(http.StatusBadRequest, "ParentNotFoundException", "We can't find a root or OU with the ParentId that you specified.")
}

func (s *Server) orgARN(kind, id string) string {
	return "arn:aws:organizations::" + s.org.management().ID + ":" + kind + "/" + s.org.id + "/" + id
}

func (s *Server) describeOrganization() any {
	mgmt := s.org.management()
	return map[string]any{"Organization": map[string]any{
		"Arn":                  "arn:aws:organizations::" + mgmt.ID + ":organization/" + s.org.id,
		"Id":                   s.org.id,
		"FeatureSet":           "ALL",
		"MasterAccountArn":     s.orgARN("account", mgmt.ID),
		"MasterAccountEmail":   mgmt.email,
		"MasterAccountId":      mgmt.ID,
		"AvailablePolicyTypes": []any{},
	}}
}

// orgAccounts lists the accounts under parent, or every account if parent
// is empty.
func (s *Server) orgAccounts(parent string) []orgAccount {
	var out []orgAccount
	for _, a := range s.org.accounts {
		if parent != "" && a.OU != parent {
			continue
		}
		path := s.org.id + "/" + orgRootID + "/"
		if a.OU != orgRootID {
			path += a.OU + "/"
		}
		method := "CREATED"
		if a.Management {
			method = "INVITED"
		}
		out = append(out, orgAccount{
			Arn: s.orgARN("account", a.ID), Email: a.email, ID: a.ID, JoinedMethod: method,
			JoinedTimestamp: smTime(a.joined), Name: a.Name, Paths: []string{path + a.ID + "/"},
			State: "ACTIVE", Status: "ACTIVE",
		})
	}
	return out
}

// orgPage returns the page of items that in's NextToken and MaxResults
// select, under key, with the NextToken of the next page. Tokens are the
// base64 of the offset.
func orgPage[T any](in orgPageInput, key string, items []T) (any, *apiError) {
	size := orgMaxResults
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > orgMaxResults {
			return nil, orgError(http.StatusBadRequest, "InvalidInputException", "You provided a value that does not match the required pattern: MaxResults must be between 1 and 20.")
		}
		size = *in.MaxResults
	}
	start := 0
	if in.NextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		n, convErr := strconv.Atoi(string(b))
		if err != nil || convErr != nil || n < 0 || n > len(items) {
			return nil, orgError(http.StatusBadRequest, "InvalidInputException", "The NextToken is invalid.")
		}
		start = n
	}
	end := min(start+size, len(items))
	page := items[start:end]
	if page == nil {
		page = []T{}
	}
	out := map[string]any{key: page}
	if end < len(items) {
		out["NextToken"] = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return out, nil
}

// accountRoutes serves the accounts and their member roles:
// GET /_sandbox/accounts, and GET, POST (create or replace, body a
// MemberRole) and DELETE /_sandbox/accounts/{id}/role.
func (s *Server) accountRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sandbox/accounts", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.Accounts())
	})
	mux.HandleFunc("GET /_sandbox/accounts/{id}/role", func(w http.ResponseWriter, r *http.Request) {
		role, ok := s.MemberRole(r.PathValue("id"))
		if !ok {
			adminJSON(w, http.StatusNotFound, map[string]string{"error": "no member account " + strconv.Quote(r.PathValue("id")) + ", or its role was deleted"})
			return
		}
		adminJSON(w, http.StatusOK, role)
	})
	mux.HandleFunc("POST /_sandbox/accounts/{id}/role", func(w http.ResponseWriter, r *http.Request) {
		var role MemberRole
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&role); err != nil {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": "decode role: " + err.Error()})
			return
		}
		if err := s.SetMemberRole(r.PathValue("id"), role); err != nil {
			adminJSON(w, roleErrorStatus(err), map[string]string{"error": err.Error()})
			return
		}
		adminJSON(w, http.StatusOK, role)
	})
	mux.HandleFunc("DELETE /_sandbox/accounts/{id}/role", func(w http.ResponseWriter, r *http.Request) {
		if err := s.DeleteMemberRole(r.PathValue("id")); err != nil {
			adminJSON(w, roleErrorStatus(err), map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func roleErrorStatus(err error) int {
	if errors.Is(err, errNoMember) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

// Accounts lists the sandbox's accounts, the management account first
// (GET /_sandbox/accounts).
func (s *Server) Accounts() []Account { return s.org.list() }

// MemberRole returns the keyrot-member role of member account id, and
// whether it exists.
func (s *Server) MemberRole(id string) (MemberRole, bool) { return s.org.role(id) }

// SetMemberRole creates or replaces the keyrot-member role of member account
// id (POST /_sandbox/accounts/{id}/role).
func (s *Server) SetMemberRole(id string, r MemberRole) error {
	if err := s.org.setRole(id, r); err != nil {
		return fmt.Errorf("sandbox: set member role: %w", err)
	}
	return nil
}

// DeleteMemberRole deletes the keyrot-member role of member account id, so
// that AssumeRole into it is denied (DELETE /_sandbox/accounts/{id}/role),
// and so are the calls of the sessions already handed out, but for
// GetCallerIdentity, as in AWS.
func (s *Server) DeleteMemberRole(id string) error {
	if err := s.org.deleteRole(id); err != nil {
		return fmt.Errorf("sandbox: delete member role: %w", err)
	}
	return nil
}
