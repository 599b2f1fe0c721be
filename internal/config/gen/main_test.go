package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
)

const docsPath = "../../../docs/config.md"

// TestDocsCurrent fails when docs/config.md is not what the config tree
// generates: run `go generate ./internal/config`.
func TestDocsCurrent(t *testing.T) {
	want, err := reference("..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("docs/config.md is stale from line %d:\n have: %s\n want: %s\nrun: go generate ./internal/config", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("docs/config.md is stale (%d lines, want %d): run go generate ./internal/config", len(gl), len(wl))
	}
}

// TestEverySettingDocumented: every setting has a doc comment and appears
// in the reference with each of its environment variables.
func TestEverySettingDocumented(t *testing.T) {
	docs, err := fieldDocs("..")
	if err != nil {
		t.Fatal(err)
	}
	ref := string(config.Reference(docs))
	for _, s := range config.Settings() {
		if docs[s.Owner+"."+s.Field] == "" {
			t.Errorf("%s (%s.%s) has no doc comment", s.Path, s.Owner, s.Field)
		}
		for _, e := range s.Env {
			if !strings.Contains(ref, "`"+e+"`") {
				t.Errorf("%s missing from the reference", e)
			}
		}
	}
}
