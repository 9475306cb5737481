package forwarder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOrphaned(t *testing.T) {
	cfg := fakeConfig(t, "")
	if _, err := Ensure(t.Context(), cfg); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	other := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	idle := t.TempDir() // an attachment directory with no forwarder
	for _, tc := range []struct {
		name, dir, netns string
		want             bool
		why              string
	}{
		// The fake pasta runs in the test's own namespace.
		{"namespace in use", cfg.Dir, "/proc/self/ns/net", false, ""},
		{"namespace removed", cfg.Dir, "/run/netns/passt-portmap-test-never-made", true, "no longer exists"},
		// The fake holds no namespace open: whether the path still names
		// the one it serves cannot be told, and it is left alone.
		{"running, namespace unknown", cfg.Dir, other, false, ""},
		{"no forwarder, namespace exists", idle, other, false, ""},
		{"no forwarder, namespace removed", idle, "/run/netns/passt-portmap-test-never-made", true, "no longer exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why, err := Orphaned(tc.dir, tc.netns)
			if err != nil || got != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("Orphaned = %v, %q, %v; want %v, %q", got, why, err, tc.want, tc.why)
			}
		})
	}
	if _, _, err := Orphaned(cfg.Dir, ""); err == nil {
		t.Error("Orphaned with no namespace path: no error")
	}
}
