// Package buildinfo says which build of keyrot is running: its version, the
// commit it was built from and the Go toolchain, read from the build
// information the Go linker embeds in every binary.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version and commit are set at link time by `make release`:
//
//	-ldflags "-X github.com/keyrot/keyrot/internal/buildinfo.version=v1.2.3
//	          -X github.com/keyrot/keyrot/internal/buildinfo.commit=<sha>"
//
// (commit for builds without VCS stamping, -buildvcs=false). They are
// package variables because -X can set nothing else; only Read uses them.
var version, commit string

// Info describes a build.
type Info struct {
	// Version is the release version (v1.2.3): the one `make release`
	// linked in, else the module version `go install ...@version` or a
	// build in a git checkout recorded, else "devel".
	Version string
	// Commit is the git commit built, when known; Modified reports
	// uncommitted changes in the checkout it was built from.
	Commit   string
	Modified bool
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string
	// Platform is GOOS/GOARCH.
	Platform string
}

// Read returns this binary's build information.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(version, commit, bi)
}

// fromBuildInfo derives Info from the linked version and commit and the
// embedded build information (nil when the binary has none). The VCS
// stamp, when there is one, names the commit.
func fromBuildInfo(linked, linkedCommit string, bi *debug.BuildInfo) Info {
	info := Info{Version: linked, Commit: linkedCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if info.Version == "" {
			info.Version = "devel"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		info.Platform = goos + "/" + goarch
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" || info.Version == "(devel)" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		// go install ...@<commit> records a pseudo-version ending in the
		// commit's first 12 hex digits, and no vcs settings.
		info.Commit = pseudoVersionCommit(bi.Main.Version)
	}
	return info
}

// pseudoVersionCommit returns the commit prefix of a pseudo-version
// (v0.0.0-20260101120000-0123456789ab), or "".
func pseudoVersionCommit(v string) string {
	v, _, _ = strings.Cut(v, "+")
	i := strings.LastIndexByte(v, '-')
	if i < 0 || len(v)-i-1 != 12 {
		return ""
	}
	rev := v[i+1:]
	for _, c := range rev {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	// The part before is the 14-digit timestamp of a pseudo-version.
	stamp := v[:i]
	if j := strings.LastIndexAny(stamp, "-."); j < 0 || len(stamp)-j-1 != 14 {
		return ""
	}
	return rev
}

// String is the one-line form: "v1.2.3 (commit 0123456789ab, go1.26.8 linux/amd64)".
func (i Info) String() string {
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	} else if len(commit) > 12 {
		commit = commit[:12]
	}
	if i.Modified {
		commit += ", modified"
	}
	return fmt.Sprintf("%s (commit %s, %s %s)", i.Version, commit, i.GoVersion, i.Platform)
}
