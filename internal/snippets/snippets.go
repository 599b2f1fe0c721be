// Package snippets reads the fenced code blocks of a Markdown document with
// the marks that say how a test runs them, so that the document's commands
// are run as written and cannot drift from what the program does.
//
// A mark is an HTML comment (invisible once rendered) on the line before a
// block's opening fence:
//
//	<!-- runnable -->                         run the block with bash; it must succeed
//	<!-- runnable: OPTION; OPTION -->         the same, with options
//	<!-- not runnable: REASON -->             never run, and why
//
// The options:
//
//	background until /REGEXP/   start the block and wait until its output
//	                            matches; it runs on while later blocks run
//	file PATH                   write the block to PATH instead of running it
//	sourcing PATH               source PATH first: the reader's shell already did
//	clone                       run in the repository's root (default: a scratch directory)
//	aws-endpoint                the block's aws commands are for real AWS: in the
//	                            test they get --endpoint-url from AWS_ENDPOINT_URL,
//	                            which AWS CLIs before 2.13 (Debian's 2.9) ignore
//
// Every shell block (sh, bash, shell) must carry a mark, so a new command in
// the document is either run or said not to be; other blocks may.
package snippets

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Snippet is one fenced block and its mark.
type Snippet struct {
	Line int    // the opening fence's line, from 1
	Lang string // the first word of the fence's info string
	Text string // the block's content, with its final newline

	Marked   bool   // it has a mark
	Run      bool   // marked runnable (File set: written rather than run)
	Reason   string // why it is not runnable
	Until    *regexp.Regexp
	File     string
	Sourcing []string
	Clone    bool
	// AWSEndpoint: the block's aws commands are meant for real AWS.
	AWSEndpoint bool
}

// Shell reports whether the block holds shell commands.
func (s Snippet) Shell() bool {
	switch s.Lang {
	case "sh", "bash", "shell":
		return true
	}
	return false
}

var (
	markRe  = regexp.MustCompile(`^<!--\s*(runnable|not runnable)\s*(?::\s*(.*?))?\s*-->$`)
	fenceRe = regexp.MustCompile("^(```+|~~~+)\\s*([^`\\s]*)")
	untilRe = regexp.MustCompile(`^background until /(.+)/$`)
)

// Parse returns the document's fenced blocks in order. A mark that is not
// followed by a fence, an option it does not know, or a shell block with
// no mark is an error naming the line.
func Parse(doc []byte) ([]Snippet, error) {
	var (
		out     []Snippet
		pending *Snippet // the mark on the previous line
		open    *Snippet // the block being read
		fence   string
		body    strings.Builder
		n       int
	)
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		n++
		line := sc.Text()
		if open != nil {
			if strings.HasPrefix(strings.TrimSpace(line), fence) && strings.Trim(strings.TrimSpace(line), fence[:1]) == "" {
				open.Text = body.String()
				if open.Shell() && !open.Marked {
					return nil, fmt.Errorf("line %d: a %s block without a mark: put <!-- runnable --> (or <!-- not runnable: why -->) on the line before it", open.Line, open.Lang)
				}
				out = append(out, *open)
				open = nil
				continue
			}
			body.WriteString(line + "\n")
			continue
		}
		trimmed := strings.TrimSpace(line)
		if m := fenceRe.FindStringSubmatch(trimmed); m != nil {
			open = &Snippet{Line: n, Lang: m[2]}
			if pending != nil {
				*open = *pending
				open.Line, open.Lang = n, m[2]
			}
			pending, fence = nil, m[1]
			body.Reset()
			continue
		}
		if pending != nil {
			return nil, fmt.Errorf("line %d: a mark is not followed by a fenced block", n-1)
		}
		if m := markRe.FindStringSubmatch(trimmed); m != nil {
			s, err := parseMark(m[1], m[2])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			pending = &s
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("snippets: %w", err)
	}
	if open != nil {
		return nil, fmt.Errorf("line %d: the block is never closed", open.Line)
	}
	if pending != nil {
		return nil, fmt.Errorf("line %d: a mark is not followed by a fenced block", n)
	}
	return out, nil
}

func parseMark(kind, options string) (Snippet, error) {
	s := Snippet{Marked: true}
	if kind == "not runnable" {
		if options == "" {
			return s, fmt.Errorf("<!-- not runnable: REASON -->: say why")
		}
		s.Reason = options
		return s, nil
	}
	s.Run = true
	if options == "" {
		return s, nil
	}
	for _, o := range strings.Split(options, ";") {
		o = strings.TrimSpace(o)
		word, arg, _ := strings.Cut(o, " ")
		switch {
		case untilRe.MatchString(o):
			re, err := regexp.Compile(untilRe.FindStringSubmatch(o)[1])
			if err != nil {
				return s, fmt.Errorf("background until: %w", err)
			}
			s.Until = re
		case word == "file" && arg != "":
			s.File = arg
		case word == "sourcing" && arg != "":
			s.Sourcing = append(s.Sourcing, arg)
		case o == "clone":
			s.Clone = true
		case o == "aws-endpoint":
			s.AWSEndpoint = true
		default:
			return s, fmt.Errorf("unknown runnable option %q (background until /RE/, file PATH, sourcing PATH, clone, aws-endpoint)", o)
		}
	}
	return s, nil
}
