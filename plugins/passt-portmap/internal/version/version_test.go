package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuild(t *testing.T) {
	vcs := func(rev, tm, mod string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: tm}, {Key: "vcs.modified", Value: mod}}
	}
	const rev = "b3a93113bbad659123067524727defba85b4fe05"
	for _, tc := range []struct {
		name     string
		bi       *debug.BuildInfo
		str      string
		describe string
	}{
		{"no build info", nil, Base, "no version control information"},
		{"go build with -buildvcs=false", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Base, "no version control information"},
		{"go build in a checkout", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130111047-b3a93113bbad"}, Settings: vcs(rev, "2026-11-30T11:10:47Z", "false")},
			Base + "+b3a93113bbad", "(commit " + rev + " of 2026-11-30T11:10:47Z)"},
		{"go build in a changed checkout", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130111047-b3a93113bbad+dirty"}, Settings: vcs(rev, "2026-11-30T11:10:47Z", "true")},
			Base + "+b3a93113bbad.dirty", "with uncommitted changes"},
		{"go build after a tag", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.1-0.20261130111047-b3a93113bbad"}, Settings: vcs(rev, "", "false")},
			Base + "+b3a93113bbad", "(commit " + rev + ")"},
		{"go install at a release", &debug.BuildInfo{Main: debug.Module{Version: "v0.2.0"}}, "0.2.0", "0.2.0 (no version control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := FromBuild(tc.bi)
			if got := i.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
			if got := i.Describe(); !strings.HasPrefix(got, tc.str+" ") || !strings.Contains(got, tc.describe) {
				t.Errorf("Describe() = %q, want %q then %q", got, tc.str, tc.describe)
			}
		})
	}
}

// TestCurrent: the test binary is never "(devel)".
func TestCurrent(t *testing.T) {
	if v := Current().String(); v == "" || strings.Contains(v, "devel") || !strings.HasPrefix(v, Base) {
		t.Errorf("Current() = %q", v)
	}
}
