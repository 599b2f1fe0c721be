package sandbox

import "net/http"

type getCallerIdentityResult struct {
	Arn     string `xml:"Arn"`
	UserID  string `xml:"UserId"`
	Account string `xml:"Account"`
}

// handleSTS serves STS. Only GetCallerIdentity: the signature check and the
// last-use record already happened in the dispatcher.
func (s *Server) handleSTS(caller principal, op string) (any, *apiError) {
	if op != "GetCallerIdentity" {
		return nil, errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version 2011-06-15", op)
	}
	arn, userID := s.iam.whoami(caller)
	return getCallerIdentityResult{Arn: arn, UserID: userID, Account: s.opts.AccountID}, nil
}
