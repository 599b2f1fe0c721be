package sandbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
)

// rawEmail is what the outbox shows of a raw MIME message.
type rawEmail struct {
	From, Subject, Text, HTML string
	To, Cc, Bcc, ReplyTo      []string
	Attachments               []EmailAttachment
}

// parseRawEmail parses a raw MIME message: its address headers, its subject
// (RFC 2047 decoded), and its first text/plain and text/html parts (transfer
// encoding decoded); other parts are listed as attachments.
func parseRawEmail(data []byte) (*rawEmail, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("read headers: %w", err)
	}
	var out rawEmail
	dec := new(mime.WordDecoder)
	if subj := msg.Header.Get("Subject"); subj != "" {
		if d, err := dec.DecodeHeader(subj); err == nil {
			out.Subject = d
		} else {
			out.Subject = subj
		}
	}
	addrs := func(key string) ([]string, error) {
		if msg.Header.Get(key) == "" {
			return nil, nil
		}
		list, err := msg.Header.AddressList(key)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", key, err)
		}
		var ss []string
		for _, a := range list {
			if a.Name != "" {
				ss = append(ss, a.Name+" <"+a.Address+">")
			} else {
				ss = append(ss, a.Address)
			}
		}
		return ss, nil
	}
	from, err := addrs("From")
	if err != nil {
		return nil, err
	}
	if len(from) > 0 {
		out.From = from[0]
	}
	for _, h := range []struct {
		key string
		dst *[]string
	}{{"To", &out.To}, {"Cc", &out.Cc}, {"Bcc", &out.Bcc}, {"Reply-To", &out.ReplyTo}} {
		if *h.dst, err = addrs(h.key); err != nil {
			return nil, err
		}
	}
	if err := out.walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"),
		msg.Header.Get("Content-Disposition"), msg.Body, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// walk reads one MIME entity, descending into multipart bodies.
func (e *rawEmail) walk(contentType, encoding, disposition string, body io.Reader, depth int) error {
	if depth > 10 {
		return errors.New("MIME parts nested too deeply")
	}
	if contentType == "" {
		contentType = "text/plain"
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("content type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		boundary := params["boundary"]
		if boundary == "" {
			return fmt.Errorf("%s without a boundary", mediaType)
		}
		mr := multipart.NewReader(body, boundary)
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("multipart: %w", err)
			}
			if err := e.walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"),
				p.Header.Get("Content-Disposition"), p, depth+1); err != nil {
				return err
			}
		}
	}
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "7bit", "8bit", "binary":
		r = body
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &newlineStripper{r: body})
	default:
		return fmt.Errorf("unknown Content-Transfer-Encoding %q", encoding)
	}
	content, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("decode %s part: %w", mediaType, err)
	}
	disp, dparams, _ := mime.ParseMediaType(disposition)
	attachment := disp == "attachment"
	switch {
	case mediaType == "text/plain" && !attachment && e.Text == "":
		e.Text = string(content)
	case mediaType == "text/html" && !attachment && e.HTML == "":
		e.HTML = string(content)
	default:
		name := dparams["filename"]
		if name == "" {
			name = params["name"]
		}
		e.Attachments = append(e.Attachments, EmailAttachment{FileName: name, ContentType: mediaType, Size: len(content)})
	}
	return nil
}

// newlineStripper drops CR and LF so base64 bodies broken into lines decode.
type newlineStripper struct{ r io.Reader }

func (n *newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, b := range p[:k] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
