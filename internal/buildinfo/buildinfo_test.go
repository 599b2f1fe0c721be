package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "GOOS", Value: "darwin"}, {Key: "GOARCH", Value: "arm64"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.modified", Value: "false"},
	}
	tests := []struct {
		name         string
		linked       string
		linkedCommit string
		bi           *debug.BuildInfo
		want         Info
	}{
		{
			name:   "make release: the linked version wins",
			linked: "v1.2.3",
			bi:     &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261102090000-0123456789ab+dirty"}, Settings: vcs},
			want:   Info{Version: "v1.2.3", Commit: "0123456789abcdef0123456789abcdef01234567", GoVersion: "go1.26.8", Platform: "darwin/arm64"},
		},
		{
			name:         "make release without VCS stamping: the linked commit",
			linked:       "v1.2.3",
			linkedCommit: "89abcdef0123456789abcdef0123456789abcdef",
			bi:           &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs[:2]},
			want:         Info{Version: "v1.2.3", Commit: "89abcdef0123456789abcdef0123456789abcdef", GoVersion: "go1.26.8", Platform: "darwin/arm64"},
		},
		{
			name: "go install @v1.4.0: the module version",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}},
			want: Info{Version: "v1.4.0", GoVersion: "go1.26.8", Platform: runtime.GOOS + "/" + runtime.GOARCH},
		},
		{
			name: "go install @commit: the pseudo-version names the commit",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.1-0.20261102090000-abcdef012345"}},
			want: Info{Version: "v1.4.1-0.20261102090000-abcdef012345", Commit: "abcdef012345", GoVersion: "go1.26.8", Platform: runtime.GOOS + "/" + runtime.GOARCH},
		},
		{
			name: "go build outside a checkout",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want: Info{Version: "devel", GoVersion: "go1.26.8", Platform: runtime.GOOS + "/" + runtime.GOARCH},
		},
		{
			name: "modified checkout",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261102090000-0123456789ab+dirty"}, Settings: append(vcs[:3:3], debug.BuildSetting{Key: "vcs.modified", Value: "true"})},
			want: Info{Version: "v0.0.0-20261102090000-0123456789ab+dirty", Commit: "0123456789abcdef0123456789abcdef01234567", Modified: true, GoVersion: "go1.26.8", Platform: "darwin/arm64"},
		},
		{
			name: "no build info",
			want: Info{Version: "devel", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(tt.linked, tt.linkedCommit, tt.bi); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPseudoVersionCommit(t *testing.T) {
	for v, want := range map[string]string{
		"v0.0.0-20261102090000-0123456789ab":        "0123456789ab",
		"v1.2.4-0.20261102090000-0123456789ab":      "0123456789ab",
		"v1.2.4-rc.1.0.20261102090000-0123456789ab": "0123456789ab",
		"v0.0.0-20261102090000-0123456789ab+dirty":  "0123456789ab",
		"v1.2.3":              "",
		"v1.2.3-rc1":          "",
		"v1.2.3-abcdef012345": "",
		"(devel)":             "",
	} {
		if got := pseudoVersionCommit(v); got != want {
			t.Errorf("pseudoVersionCommit(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "0123456789abcdef", Modified: true, GoVersion: "go1.26.8", Platform: "linux/arm64"}
	if got, want := i.String(), "v1.2.3 (commit 0123456789ab, modified, go1.26.8 linux/arm64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (Info{Version: "devel", GoVersion: "go1.26.8", Platform: "linux/amd64"}).String(), "devel (commit unknown, go1.26.8 linux/amd64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
