package netavark

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
)

// fakeRuntime answers as a Podman would.
type fakeRuntime struct {
	forwards    bool
	reservation error
}

func (f fakeRuntime) ForwardsPorts() bool    { return f.forwards }
func (f fakeRuntime) PortReservation() error { return f.reservation }

func runWith(t *testing.T, rt Runtime, stdin string, args ...string) (code int, fb *fakeBackend, stdout, stderr string) {
	t.Helper()
	fb = &fakeBackend{}
	var out, errOut bytes.Buffer
	p := &Plugin{Backend: fb, Runtime: rt, Stdout: &out, Stderr: &errOut}
	code = p.Run(context.Background(), args, strings.NewReader(stdin))
	return code, fb, out.String(), errOut.String()
}

// TestSetupRuntime: what the Podman that runs the plugin decides about
// the mappings the forwarder binds.
func TestSetupRuntime(t *testing.T) {
	reserved := &podman.ReservationError{Podman: podman.Process{PID: 4242, Comm: "podman"}, Reservation: podman.Reservation{Enabled: true}}
	for _, tc := range []struct {
		name     string
		rt       Runtime
		code     int
		mappings int    // mappings the backend gets
		msg      string // in the error
	}{
		{"no runtime known", nil, 0, 2, ""},
		{"rootful, reservation off", fakeRuntime{}, 0, 2, ""},
		{"rootless: Podman forwards the ports", fakeRuntime{forwards: true, reservation: reserved}, 0, 0, ""},
		{"rootful, reservation on", fakeRuntime{reservation: reserved}, 7, -1,
			"setup of container 6e4c…b4c5 on network nvspikenet: Podman reserves the published host ports itself: set enable_port_reservation = false; passt-portmap runs under Podman (pid 4242)"},
		{"configuration unreadable", fakeRuntime{reservation: errors.New("cannot tell: bad TOML")}, 0, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, fb, out, logs := runWith(t, tc.rt, captured(t), "setup", "/run/netns/x")
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s %s", code, tc.code, out, logs)
			}
			if tc.msg != "" {
				if msg := errorOf(t, out); !strings.Contains(msg, tc.msg) || !strings.Contains(msg, "containers.conf.d") {
					t.Errorf("error %q, want %q and where to set it", msg, tc.msg)
				}
			}
			switch {
			case tc.mappings < 0 && len(fb.setups) != 0:
				t.Errorf("the backend was called: %+v", fb.setups)
			case tc.mappings >= 0 && (len(fb.setups) != 1 || len(fb.setups[0].Mappings) != tc.mappings):
				t.Errorf("backend calls %+v, want one with %d mappings", fb.setups, tc.mappings)
			}
		})
	}
	// Without mappings nothing is asked and nothing refused.
	none := strings.Replace(captured(t), `"port_mappings":[`, `"port_mappings":null,"x":[`, 1)
	if code, fb, out, _ := runWith(t, fakeRuntime{reservation: reserved}, none, "setup", "/run/netns/x"); code != 0 || len(fb.setups) != 1 {
		t.Errorf("setup without mappings under a reserving Podman: exit %d, %s", code, out)
	}
}

// TestDialect: the core's refusals name what a netavark user can set, and
// never the CNI keys this driver does not have.
func TestDialect(t *testing.T) {
	d := attach.Describe(&attach.SecondNetworkError{Why: "namespace /run/netns/x already has an interface other than lo"}, dialect{})
	if d.Kind != attach.KindBadConfig || strings.Contains(d.Error(), "socket") || strings.Contains(d.Error(), "allowChained") ||
		!strings.Contains(d.Error(), "connect the container to this network alone") {
		t.Errorf("second network: %v", d)
	}
	msg, code := render(&attach.ConfigError{Setting: attach.SettingDataDir, Err: errors.New("too long")})
	if code != 7 || !strings.Contains(msg, "network.options.dataDir: too long") {
		t.Errorf("dataDir: exit %d, %q", code, msg)
	}
	for _, s := range attach.Settings() {
		_, option := optionOf(s.String())
		if got := (dialect{}).Setting(s); option != (got == "network.options."+s.String()) || !option && got != "" {
			t.Errorf("%v is named %q", s, got)
		}
	}
}
