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
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: keyrot version\n\nPrints the version, the git commit and the Go toolchain of this build.\n")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &usageError{"usage: keyrot version"}
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
