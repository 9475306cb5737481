package integration

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/passt-portmap/passt-portmap/conformance"
	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// TestConformanceManaged runs the CNI conformance suite on the plugin in
// managed mode with the real pasta at CNI 1.1.0: no check may fail, and
// one that does not apply must say why. The removal behind the plugin's
// back is left to the report (scripts/conformance.sh), which has a hook
// for it; STATUS's unready side gets a pasta that does not exist.
func TestConformanceManaged(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	dataDir := t.TempDir()
	conf := func(pastaPath string) []byte {
		b, err := json.Marshal(map[string]any{
			"cniVersion": "1.1.0", "name": "pt-conformance",
			"plugins": []any{map[string]any{
				"type": "passt-portmap", "pasta": pastaPath, "dataDir": dataDir,
				"capabilities": map[string]bool{"portMappings": true},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := &conformance.Suite{
		PluginDirs:      []string{pluginDir},
		Conflist:        conf(pasta),
		UnreadyConflist: conf(filepath.Join(t.TempDir(), "no-pasta")),
		Versions:        []string{"1.1.0"},
		Timeout:         callTimeout,
	}
	res, err := s.Run(ctx(t))
	if err != nil {
		t.Fatalf("conformance suite: %v", err)
	}
	passed := 0
	for _, r := range res {
		switch {
		case r.Status == conformance.Fail:
			t.Errorf("%s", conformance.Line(r))
		case r.Status == conformance.NA && (r.Observed == "" || r.ID != "check-removed"):
			// Only the removal behind the plugin's back needs a hook.
			t.Errorf("%s: N/A: %q", r.ID, r.Observed)
		case r.Status == conformance.Pass:
			passed++
		}
	}
	if passed != len(res)-1 {
		t.Errorf("%d of %d checks passed, want all but check-removed", passed, len(res))
	}
	t.Logf("%d of %d checks passed", passed, len(res))
}
