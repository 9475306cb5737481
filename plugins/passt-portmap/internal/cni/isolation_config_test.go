package cni

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// TestParseConfigHostAccess: the host's loopback is closed unless
// mapHostLoopback or loopbackToHost open it; bad values and refused
// pastaArgs are code 7 naming the key (and the pastaArgs index).
func TestParseConfigHostAccess(t *testing.T) {
	c, err := ParseConfig([]byte(`{"name":"n"}`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Options.MapHostLoopback) != 0 || c.Options.LoopbackToHost {
		t.Fatalf("defaults: mapHostLoopback %v, loopbackToHost %v; want the host's loopback closed", c.Options.MapHostLoopback, c.Options.LoopbackToHost)
	}
	c, err = ParseConfig([]byte(`{"name":"n","mapHostLoopback":"169.254.1.2, fd99::2","loopbackToHost":true}`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("fd99::2")}
	if !slices.Equal(c.Options.MapHostLoopback, want) || !c.Options.LoopbackToHost {
		t.Fatalf("mapHostLoopback %v, loopbackToHost %v", c.Options.MapHostLoopback, c.Options.LoopbackToHost)
	}

	for _, tc := range []struct{ conf, key, msg string }{
		{`{"name":"n","mapHostLoopback":"host"}`, "mapHostLoopback", "want one IP address"},
		{`{"name":"n","mapHostLoopback":"127.0.0.1"}`, "mapHostLoopback", "outside the container's loopback"},
		{`{"name":"n","mapHostLoopback":"169.254.1.2,169.254.1.3"}`, "mapHostLoopback", "at most one IPv4"},
		{`{"name":"n","mapHostLoopback":"169.254.1.2,"}`, "mapHostLoopback", "want one IP address"},
		{`{"name":"n","pastaArgs":["-q","-4c","/x"]}`, "pastaArgs[1]", `"-4c": option -c (--conf-path) is set by the managed forwarder itself`},
		{`{"name":"n","pastaArgs":["--map-host-loopback=169.254.1.2"]}`, "pastaArgs[0]", "use mapHostLoopback instead"},
		{`{"name":"n","pastaArgs":["-T","auto"]}`, "pastaArgs[0]", "use loopbackToHost instead"},
		{`{"name":"n","pastaArgs":["--outbound","127.0.0.1","--map-guest-addr","169.254.1.2"]}`, "pastaArgs[0]", `option -o (--outbound) with value "127.0.0.1" would aim the container at the host's loopback`},
		{`{"name":"n","pastaArgs":["-q","--dns-host=::1","--dns-forward","169.254.1.3"]}`, "pastaArgs[1]", `option --dns-host with value "::1"`},
		{`{"name":"n","pastaArgs":["--outbound-if4","lo"]}`, "pastaArgs[0]", "loopback interface"},
		{`{"name":"n","pastaArgs":["sh"]}`, "pastaArgs[0]", "not an option"},
	} {
		_, err := ParseConfig([]byte(tc.conf), testEnv)
		var ce *attach.ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want a ConfigError for %s saying %q", tc.conf, err, tc.key, tc.msg)
			continue
		}
		if e := toCNI(err); e.Code != 7 || !strings.Contains(e.Details, "configuration key "+tc.key+": ") {
			t.Errorf("%s: CNI error %+v, want code 7 naming %s", tc.conf, e, tc.key)
		}
	}
}
