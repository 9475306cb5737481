package attach

import (
	"errors"
	"strings"
	"testing"
)

func TestDefaultDataDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   Identity
		want string // the directory, or what the error says
		fail bool
	}{
		{"system's root", Identity{EUID: 0, OwnsVarLib: true, RuntimeDir: "/run/user/0"}, SystemDataDir, false},
		{"system's root without XDG_RUNTIME_DIR", Identity{EUID: 0, OwnsVarLib: true}, SystemDataDir, false},
		{"a user", Identity{EUID: 1000, RuntimeDir: "/run/user/1000"}, "/run/user/1000/passt-portmap", false},
		{"a user with a runtime directory not clean", Identity{EUID: 1000, RuntimeDir: "/run/user/1000/"}, "/run/user/1000/passt-portmap", false},
		{"rootless Podman's network namespace", Identity{EUID: 0, OwnsVarLib: false, RuntimeDir: "/run/user/1000"}, "/run/user/1000/passt-portmap", false},
		{"rootless without XDG_RUNTIME_DIR", Identity{EUID: 0}, "uid 0 of a user namespace that does not own /var/lib", true},
		{"a user without XDG_RUNTIME_DIR", Identity{EUID: 1000}, "runs as uid 1000 without XDG_RUNTIME_DIR", true},
		{"a relative XDG_RUNTIME_DIR", Identity{EUID: 1000, RuntimeDir: "run"}, "not an absolute path", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DefaultDataDir(tc.id)
			if !tc.fail {
				if err != nil || got != tc.want {
					t.Fatalf("%q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Setting != SettingDataDir || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%q, %v; want a ConfigError of dataDir saying %q", got, err, tc.want)
			}
			if d := Describe(err, nil); d.Kind != KindBadConfig || !strings.Contains(d.Details, "dataDir: not set") {
				t.Errorf("described as %v", d)
			}
		})
	}
}

// TestResolveDataDir: an Options without a data directory gets the
// default, one with it keeps it.
func TestResolveDataDir(t *testing.T) {
	o := Options{DataDir: "/d"}
	if err := o.resolve(); err != nil || o.DataDir != "/d" {
		t.Errorf("set: %q, %v", o.DataDir, err)
	}
	o = Options{}
	want, werr := DefaultDataDir(ProcessIdentity())
	if err := o.resolve(); o.DataDir != want || (err == nil) != (werr == nil) {
		t.Errorf("unset: %q, %v; want %q, %v", o.DataDir, err, want, werr)
	}
}
