package main

import (
	"context"
	"fmt"

	"github.com/keyrot/keyrot/internal/buildinfo"
)

// runVersion prints which build this is: the version (set by make release,
// else the module version go install recorded), the commit and the Go
// toolchain.
func (m *Main) runVersion(_ context.Context, args []string) error {
	fs := m.flags("version")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	info := buildinfo.Read()
	commit := info.Commit
	if commit == "" {
		commit = "unknown"
	}
	if info.Modified {
		commit += " (modified)"
	}
	_, err := fmt.Fprintf(m.Stdout, "keyrot %s\ncommit: %s\ngo:     %s %s\n", info.Version, commit, info.GoVersion, info.Platform)
	return err
}
