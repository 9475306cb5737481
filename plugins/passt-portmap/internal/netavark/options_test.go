package netavark

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	def := Options{Timeout: DefaultTimeout, Verify: true}
	with := func(f func(*Options)) Options { o := def; f(&o); return o }
	tests := []struct {
		name string
		in   map[string]string
		want Options
		err  string // "network.options.KEY: ..." substring; "" means valid
	}{
		{"none: the CNI defaults", nil, def, ""},
		{"empty", map[string]string{}, def, ""},
		{"all", map[string]string{"pasta": "/usr/bin/pasta", "pastaArgs": "--mtu 1500  --ipv4-only", "dataDir": "/run/pp/", "timeout": "2s",
			"weak": "true", "verify": "false", "targetAddress": "10.0.2.15", "bindInterface": "eth1"},
			Options{Pasta: "/usr/bin/pasta", PastaArgs: []string{"--mtu", "1500", "--ipv4-only"}, DataDir: "/run/pp", Timeout: 2 * time.Second,
				Weak: true, Verify: false, Target: netip.MustParseAddr("10.0.2.15"), BindInterface: "eth1"}, ""},
		{"pasta from PATH", map[string]string{"pasta": "pasta"}, with(func(o *Options) { o.Pasta = "pasta" }), ""},
		{"pastaArgs as JSON", map[string]string{"pastaArgs": `["--search", "a b.test", "--mtu", "1500"]`},
			with(func(o *Options) { o.PastaArgs = []string{"--search", "a b.test", "--mtu", "1500"} }), ""},
		{"pastaArgs opening the host's loopback", map[string]string{"pastaArgs": "-T auto"}, def, "use loopbackToHost instead"},
		{"pastaArgs aiming at the host's loopback", map[string]string{"pastaArgs": "--outbound 127.0.0.1 --map-guest-addr 169.254.1.2"}, def, "word 0: \"--outbound\": option -o (--outbound) with value \"127.0.0.1\" would aim the container at the host's loopback"},
		{"pastaArgs with a loopback DNS host", map[string]string{"pastaArgs": `["--dns-host", "127.0.0.1", "--dns-forward", "169.254.1.3"]`}, def, "--dns-host with value \"127.0.0.1\""},
		{"weak 1", map[string]string{"weak": "1"}, with(func(o *Options) { o.Weak = true }), ""},
		{"pastaArgs outside the allow-list", map[string]string{"pastaArgs": "--dns-forward 10.0.2.3 -c /tmp/x"}, def, "network.options.pastaArgs: word 2: \"-c\""},
		{"bad JSON pastaArgs", map[string]string{"pastaArgs": `["x",1]`}, def, "network.options.pastaArgs: "},
		{"relative pasta path", map[string]string{"pasta": "bin/pasta"}, def, "network.options.pasta: "},
		{"relative dataDir", map[string]string{"dataDir": "var/lib"}, def, `network.options.dataDir: "var/lib" is not an absolute path`},
		{"bad timeout", map[string]string{"timeout": "5"}, def, "network.options.timeout: "},
		{"zero timeout", map[string]string{"timeout": "0s"}, def, "must be positive"},
		{"bad bool", map[string]string{"verify": "yes"}, def, `network.options.verify: "yes": want true or false`},
		{"target any", map[string]string{"targetAddress": "::"}, def, "unspecified"},
		{"target multicast", map[string]string{"targetAddress": "ff02::1"}, def, "multicast"},
		{"empty interface", map[string]string{"bindInterface": ""}, def, "empty"},
		{"target name", map[string]string{"targetAddress": "ctr"}, def, "not an IP address"},
		{"long interface", map[string]string{"bindInterface": "abcdefghijklmnop"}, def, "network.options.bindInterface: "},
		{"interface with slash", map[string]string{"bindInterface": "a/b"}, def, "not a valid Linux device name"},
		{"mapHostLoopback", map[string]string{"mapHostLoopback": "169.254.1.2, fd99::2", "loopbackToHost": "true"},
			with(func(o *Options) {
				o.MapHostLoopback = []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("fd99::2")}
				o.LoopbackToHost = true
			}), ""},
		{"mapHostLoopback two of a family", map[string]string{"mapHostLoopback": "169.254.1.2,169.254.1.3"}, def, "at most one IPv4 address"},
		{"mapHostLoopback loopback", map[string]string{"mapHostLoopback": "127.0.0.1"}, def, "outside the container's loopback"},
		{"mapHostLoopback name", map[string]string{"mapHostLoopback": "host"}, def, "network.options.mapHostLoopback: "},
		{"unknown key", map[string]string{"socket": "/run/x.sock"}, def, "network.options.socket: not an option of the passt-portmap driver (known: bindInterface"},
		{"first bad key by name", map[string]string{"zzz": "1", "timeout": "x"}, def, "network.options.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOptions(tt.in)
			if tt.err != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseOptions(%v) = %v, want ...%s", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseOptions(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}
