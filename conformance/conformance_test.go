package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDir holds the fakeplugin binary built by TestMain; set once before
// any test runs.
var fakeDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cniconform-fake-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "fakeplugin"),
		"github.com/passt-portmap/passt-portmap/conformance/internal/fakeplugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance: building the fake plugin: %v\n%s", err, out)
		return 1
	}
	fakeDir = dir
	return m.Run()
}

// fakeSuite is a suite over the fake plugin alone in a list, with the
// given breaks and extra configuration keys, at CNI 1.1.0.
func fakeSuite(t *testing.T, breaks []string, extra map[string]any, only ...string) *Suite {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the conformance suite makes network namespaces: run the test as root")
	}
	state := t.TempDir()
	// A directory of the test's own whose fakeplugin carries the breaks
	// in a file too: VERSION sees no configuration.
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(fakeDir, "fakeplugin"), filepath.Join(dir, "fakeplugin")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fakeplugin.break"), []byte(strings.Join(breaks, ",")), 0o600); err != nil {
		t.Fatal(err)
	}
	plugin := map[string]any{
		"type": "fakeplugin", "stateDir": state, "break": breaks,
		"capabilities": map[string]bool{"portMappings": true},
	}
	for k, v := range extra {
		plugin[k] = v
	}
	conf := func(p map[string]any) []byte {
		b, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "cnf-fake", "plugins": []any{p}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	unready := map[string]any{"unready": true}
	for k, v := range plugin {
		unready[k] = v
	}
	return &Suite{
		PluginDirs:      []string{dir},
		Conflist:        conf(plugin),
		UnreadyConflist: conf(unready),
		Versions:        []string{"1.1.0"},
		Hook:            filepath.Join(fakeDir, "fakeplugin") + " hook " + state,
		Parallel:        4,
		Only:            only,
	}
}

func runSuite(t *testing.T, s *Suite) []Result {
	t.Helper()
	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatalf("suite: %v", err)
	}
	return res
}

// TestCorrectFakePasses: a plugin that meets every requirement passes
// every check; the one check that needs an interface in the container
// does not apply to it, and passes once it makes one.
func TestCorrectFakePasses(t *testing.T) {
	for _, r := range runSuite(t, fakeSuite(t, nil, nil)) {
		want := Pass
		if r.ID == "check-interface" {
			want = NA
		}
		if r.Status != want {
			t.Errorf("%s: %s, want %s: %s", r.ID, r.Status, want, r.Observed)
		}
	}
	res := runSuite(t, fakeSuite(t, nil, map[string]any{"iface": true}, "check-interface", "add-fields", "del-twice"))
	for _, r := range res {
		if r.Status != Pass {
			t.Errorf("with an interface, %s: %s: %s", r.ID, r.Status, r.Observed)
		}
	}
}

// TestEachCheckFailsItsViolation: for every check, a fake that violates
// exactly that requirement makes it fail.
func TestEachCheckFailsItsViolation(t *testing.T) {
	tests := []struct {
		check string
		brk   string
		extra map[string]any
	}{
		{"version-output", "version-no-supported", nil},
		{"version-echo", "version-echo", nil},
		{"add-version", "add-version", nil},
		{"add-fields", "add-fields", nil},
		{"prevresult", "prevresult-drop", nil},
		{"runtime-config", "needs-runtimeconfig", nil},
		{"unknown-fields", "unknown-fields", nil},
		{"traffic-ipv4", "no-forward", nil},
		{"traffic-ipv4", "del-keeps", nil},
		{"traffic-ipv6", "ipv6-wrong", nil},
		{"del-twice", "del-twice", nil},
		{"del-no-prevresult", "del-prevresult", nil},
		{"del-netns-gone", "del-netns", nil},
		{"del-without-add", "del-without-add", nil},
		{"check-after-add", "check-after-add", nil},
		{"check-removed", "check-blind", nil},
		{"check-interface", "check-blind-iface", map[string]any{"iface": true}},
		{"disable-check", "needs-check", nil},
		{"status-ready", "status-ready", nil},
		{"status-unready", "status-code", nil},
		{"gc-removes", "gc-noop", nil},
		{"gc-keeps", "gc-all", nil},
		{"parallel", "parallel", nil},
		{"error-format", "error-plain", nil},
		{"error-format", "error-code", nil},
		{"error-version", "error-version-code", nil},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.check] = true
		t.Run(tt.check+"/"+tt.brk, func(t *testing.T) {
			res := runSuite(t, fakeSuite(t, []string{tt.brk}, tt.extra, tt.check))
			if len(res) != 1 {
				t.Fatalf("%d results, want 1: %+v", len(res), res)
			}
			if res[0].Status != Fail {
				t.Errorf("%s against a fake with %q: %s (%s), want FAIL", tt.check, tt.brk, res[0].Status, res[0].Observed)
			}
		})
	}
	for _, c := range checks {
		if !covered[c.id] {
			t.Errorf("check %s has no violating fake", c.id)
		}
	}
}
