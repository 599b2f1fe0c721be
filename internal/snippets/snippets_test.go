package snippets_test

import (
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/snippets"
)

const doc = "# Title\n" +
	"\n" +
	"<!-- runnable: clone -->\n" +
	"```sh\n" +
	"go install ./cmd/keyrot\n" +
	"```\n" +
	"<!-- runnable: background until /ci-bot +key created/ -->\n" +
	"```sh\n" +
	"keyrot dev --dir ~/d\n" +
	"```\n" +
	"<!-- runnable: sourcing ~/d/env; aws-endpoint -->\n" +
	"```bash\n" +
	"aws sts get-caller-identity\n" +
	"```\n" +
	"<!-- not runnable: needs an AWS account -->\n" +
	"```sh\n" +
	"make package\n" +
	"```\n" +
	"<!-- runnable: file keyrot.yaml -->\n" +
	"```yaml\n" +
	"region: us-east-1\n" +
	"```\n" +
	"```yaml\n" +
	"unmarked: fine\n" +
	"```\n" +
	"````md\n" +
	"```sh\n" +
	"inside a longer fence: not a block of its own\n" +
	"```\n" +
	"````\n"

func TestParse(t *testing.T) {
	got, err := snippets.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("%d snippets, want 7: %+v", len(got), got)
	}
	install, dev, direct, deploy, file, plain, nested := got[0], got[1], got[2], got[3], got[4], got[5], got[6]
	if !install.Run || !install.Clone || install.Line != 4 || install.Text != "go install ./cmd/keyrot\n" {
		t.Errorf("install: %+v", install)
	}
	if dev.Until == nil || !dev.Until.MatchString("09:30:05  ci-bot        key created") {
		t.Errorf("dev: %+v", dev)
	}
	if !direct.AWSEndpoint || len(direct.Sourcing) != 1 || direct.Sourcing[0] != "~/d/env" || direct.Lang != "bash" {
		t.Errorf("direct read: %+v", direct)
	}
	if deploy.Run || deploy.Reason != "needs an AWS account" {
		t.Errorf("deploy: %+v", deploy)
	}
	if file.File != "keyrot.yaml" || file.Text != "region: us-east-1\n" {
		t.Errorf("file: %+v", file)
	}
	if plain.Marked || plain.Lang != "yaml" {
		t.Errorf("unmarked yaml: %+v", plain)
	}
	if nested.Lang != "md" || !strings.Contains(nested.Text, "```sh\n") {
		t.Errorf("nested: %+v", nested)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"an unmarked shell block", "text\n```sh\nrm -rf /\n```\n", "line 2: a sh block without a mark"},
		{"a mark before text", "<!-- runnable -->\ntext\n", "line 1: a mark is not followed by a fenced block"},
		{"a mark at the end", "<!-- runnable -->\n", "line 1: a mark is not followed"},
		{"an unknown option", "<!-- runnable: slowly -->\n```sh\nls\n```\n", `line 1: unknown runnable option "slowly"`},
		{"no reason", "<!-- not runnable -->\n```sh\nls\n```\n", "line 1: <!-- not runnable: REASON -->"},
		{"a bad regexp", "<!-- runnable: background until /(/ -->\n```sh\nls\n```\n", "line 1: background until"},
		{"an open block", "<!-- runnable -->\n```sh\nls\n", "line 2: the block is never closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := snippets.Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
