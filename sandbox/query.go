package sandbox

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The query protocol (awsQuery), spoken by IAM and STS: form-encoded
// parameters with an Action, XML responses.

const (
	iamNamespace = "https://iam.amazonaws.com/doc/2010-05-08/"
	stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"
)

// parseQueryForm reads the parameters of a query-protocol request: the URL's
// query string and, for a form-encoded body, the body.
func parseQueryForm(r *http.Request, body []byte) (url.Values, *apiError) {
	form, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "MalformedQueryString", "The query string is malformed: %v", err)
	}
	if len(body) == 0 {
		return form, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return nil, errorf(http.StatusBadRequest, "MalformedQueryString", "Unsupported Content-Type %q: expected application/x-www-form-urlencoded.", ct)
		}
	}
	bodyForm, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "MalformedQueryString", "The request body is not a valid form: %v", err)
	}
	for k, v := range bodyForm {
		form[k] = append(form[k], v...)
	}
	return form, nil
}

// queryList reads a list parameter such as Tags.member.1.Key: prefix is
// "Tags.member" and fn is called for each index from 1 until a gap.
func queryList(form url.Values, prefix string, fields ...string) []map[string]string {
	var out []map[string]string
	for i := 1; ; i++ {
		base := prefix + "." + strconv.Itoa(i)
		item := map[string]string{}
		found := false
		if len(fields) == 0 {
			if v, ok := form[base]; ok {
				item[""] = first(v)
				found = true
			}
		}
		for _, f := range fields {
			if v, ok := form[base+"."+f]; ok {
				item[f] = first(v)
				found = true
			}
		}
		if !found {
			return out
		}
		out = append(out, item)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// writeQueryResponse writes <OpResponse><OpResult>resp</OpResult><ResponseMetadata>.
// A nil resp leaves out the result element, as AWS does for operations
// without output.
func writeQueryResponse(w http.ResponseWriter, c *call, ns string, resp any) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `<%sResponse xmlns="%s">`, c.op, ns)
	buf.WriteString("\n  ")
	if resp != nil {
		enc := xml.NewEncoder(&buf)
		if err := enc.EncodeElement(resp, xml.StartElement{Name: xml.Name{Local: c.op + "Result"}}); err != nil {
			panic(fmt.Sprintf("sandbox: encode %s %s response: %v", c.service, c.op, err))
		}
		buf.WriteString("\n  ")
	}
	fmt.Fprintf(&buf, "<ResponseMetadata>\n    <RequestId>%s</RequestId>\n  </ResponseMetadata>\n</%sResponse>\n", c.requestID, c.op)
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("X-Amzn-Requestid", c.requestID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

type queryErrorBody struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

// writeQueryError writes the query protocol's ErrorResponse document.
func writeQueryError(w http.ResponseWriter, c *call, ns string, e *apiError) {
	typ := "Sender"
	if e.Status >= 500 {
		typ = "Receiver"
	}
	b, err := xml.MarshalIndent(queryErrorBody{Xmlns: ns, Type: typ, Code: e.Code, Message: e.Message, RequestID: c.requestID}, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("sandbox: encode error %s: %v", e.Code, err))
	}
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("X-Amzn-Requestid", c.requestID)
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n"))
}

// awsTime formats t the way IAM and STS do: ISO 8601, UTC, seconds.
func awsTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// isValidName reports whether s is 1..max characters of [\w+=,.@-].
func isValidName(s string, max int) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("_+=,.@-", r):
		default:
			return false
		}
	}
	return true
}
