package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// versionLine is --version's first line: "passt-portmap VERSION (...)".
var versionLine = regexp.MustCompile(`^passt-portmap (\S+) \((.*)\)$`)

// release is a version's release part, before the build's "+COMMIT".
var release = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+`)

// versionsOf runs the plugin binary the three ways that name its version
// (--version, netavark's info, CNI without a command: skel's about line)
// and fails the test unless they agree; it returns the version and what
// --version says it was built from.
func versionsOf(t *testing.T, bin string) (v, from string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	m := versionLine.FindStringSubmatch(strings.SplitN(string(out), "\n", 2)[0])
	if m == nil {
		t.Fatalf("--version says %q", out)
	}
	v, from = m[1], m[2]

	out, err = exec.CommandContext(ctx, bin, "info").Output()
	var info struct {
		Version    string `json:"version"`
		APIVersion string `json:"api_version"`
	}
	if err != nil || json.Unmarshal(out, &info) != nil || info.Version != v || info.APIVersion != "1.0.0" {
		t.Errorf("netavark info: %s (%v), want version %q", out, err, v)
	}

	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "CNI_COMMAND=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || !strings.HasPrefix(stderr.String(), "CNI plugin passt-portmap "+v+"\n") {
		t.Errorf("CNI about line: %q (%v), want version %q", stderr.String(), err, v)
	}
	return v, from
}

// TestVersion: a plain `go build` names a version, not "(devel)", the same
// for --version, netavark's info and CNI; --help goes to stdout with
// status 0.
func TestVersion(t *testing.T) {
	v, _ := versionsOf(t, pluginBinary(t))
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(\+[0-9a-f]{12}(\.dirty)?)?$`).MatchString(v) {
		t.Errorf("version %q, want a release and the commit when known", v)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(pluginBinary(t), "--help")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "usage: passt-portmap") || stderr.Len() != 0 {
		t.Errorf("--help: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
}

// TestVersionFromCheckout: `go build` in a git checkout of this commit,
// with the toolchain's version control stamping on (some machines turn it
// off with GOFLAGS=-buildvcs=false), names the commit.
func TestVersionFromCheckout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	top, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v (the test runs in a git checkout)", err)
	}
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(head))
	clone := filepath.Join(t.TempDir(), "src")
	if out, err := exec.CommandContext(ctx, "git", "clone", "--quiet", "--no-checkout", strings.TrimSpace(string(top)), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", clone, "checkout", "--quiet", rev).CombinedOutput(); err != nil {
		t.Fatalf("git checkout: %v: %s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "passt-portmap")
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=true", "-o", bin, "./plugins/passt-portmap")
	build.Dir = clone
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=true")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	v, from := versionsOf(t, bin)
	if v != release.FindString(v)+"+"+rev[:12] || !strings.HasPrefix(from, "commit "+rev+" of ") {
		t.Errorf("built from %s: version %q (%s)", rev, v, from)
	}
}
