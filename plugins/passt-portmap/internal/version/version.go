// Package version names the passt-portmap being run, the same way for
// every front end: "--version", CNI (skel's about line) and netavark's
// info.
//
// The version is Base, the release this source is or leads to (a release
// is tagged "v" + Base), followed by what the Go toolchain embedded of the
// checkout it was built from: the commit, and whether the tree had
// changes. A build with "go install ...@vX.Y.Z" names the module version
// it was installed at. A build without version control information
// (outside a checkout, or with -buildvcs=false) is Base alone.
package version

import (
	"runtime/debug"
	"strings"
)

// Base is the release this source is, or the next one: bumped when a
// release is tagged v<Base>.
const Base = "0.1.0"

// Info is what is known of the build.
type Info struct {
	// Version is Base, or the module's version when it was built from a
	// module download (go install ...@version).
	Version string
	// Revision, Time and Modified are the version control information
	// the toolchain embedded: commit, commit time (RFC 3339), and whether
	// the working tree had uncommitted changes. Empty without it.
	Revision string
	Time     string
	Modified bool
}

// String is the version on one line, e.g. "0.1.0+b3a93113bbad.dirty".
func (i Info) String() string {
	v := i.Version
	if i.Revision == "" {
		return v
	}
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v += "+" + rev
	if i.Modified {
		v += ".dirty"
	}
	return v
}

// Describe is the version with what it was built from, for --version.
func (i Info) Describe() string {
	if i.Revision == "" {
		return i.String() + " (no version control information in this build)"
	}
	s := i.String() + " (commit " + i.Revision
	if i.Time != "" {
		s += " of " + i.Time
	}
	if i.Modified {
		s += ", with uncommitted changes"
	}
	return s + ")"
}

// FromBuild reads the Info of a build (debug.ReadBuildInfo's).
func FromBuild(bi *debug.BuildInfo) Info {
	i := Info{Version: Base}
	if bi == nil {
		return i
	}
	// A module download has a release or pseudo-version of its own; a
	// build in a checkout has "(devel)" or, from Go 1.24 on, a
	// pseudo-version made of the commit, which the revision says better.
	if v := bi.Main.Version; strings.HasPrefix(v, "v") && !isPseudo(v) && !strings.HasSuffix(v, "+dirty") {
		i.Version = strings.TrimPrefix(v, "v")
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// isPseudo reports whether v is a Go pseudo-version
// (vX.Y.Z-[0.]yyyymmddhhmmss-abcdefabcdef).
func isPseudo(v string) bool {
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	f := strings.Split(v, "-")
	if len(f) < 3 {
		return false
	}
	rev, ts := f[len(f)-1], f[len(f)-2]
	if j := strings.LastIndexByte(ts, '.'); j >= 0 {
		ts = ts[j+1:]
	}
	return len(rev) == 12 && len(ts) == 14 && isDigits(ts)
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Current is the running program's Info.
func Current() Info {
	bi, _ := debug.ReadBuildInfo()
	return FromBuild(bi)
}
