package netavark

import (
	"errors"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/attach/attachtest"
)

func TestParseOptions(t *testing.T) {
	def := attach.Options{Timeout: attach.DefaultTimeout, Verify: true}
	with := func(f func(*attach.Options)) attach.Options { o := def; f(&o); return o }
	tests := []struct {
		name string
		in   map[string]string
		want attach.Options
	}{
		{"none: the core's defaults", nil, def},
		{"empty", map[string]string{}, def},
		{"all", map[string]string{"pasta": "/usr/bin/pasta", "pastaArgs": "--mtu 1500  --ipv4-only", "dataDir": "/run/pp/", "timeout": "2s",
			"weak": "true", "verify": "false", "targetAddress": "10.0.2.15", "bindInterface": "eth1"},
			attach.Options{Pasta: "/usr/bin/pasta", PastaArgs: []string{"--mtu", "1500", "--ipv4-only"}, DataDir: "/run/pp", Timeout: 2 * time.Second,
				Weak: true, Verify: false, TargetAddress: netip.MustParseAddr("10.0.2.15"), BindInterface: "eth1"}},
		{"pasta from PATH", map[string]string{"pasta": "pasta"}, with(func(o *attach.Options) { o.Pasta = "pasta" })},
		{"pastaArgs as JSON", map[string]string{"pastaArgs": `["--search", "a b.test", "--mtu", "1500"]`},
			with(func(o *attach.Options) { o.PastaArgs = []string{"--search", "a b.test", "--mtu", "1500"} })},
		{"weak 1", map[string]string{"weak": "1"}, with(func(o *attach.Options) { o.Weak = true })},
		{"empty values are the defaults", map[string]string{"bindInterface": "", "timeout": "", "verify": "", "weak": "", "dataDir": "", "mapHostLoopback": ""}, def},
		{"mapHostLoopback", map[string]string{"mapHostLoopback": "169.254.1.2, fd99::2", "loopbackToHost": "true"},
			with(func(o *attach.Options) {
				o.MapHostLoopback = []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("fd99::2")}
				o.LoopbackToHost = true
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOptions(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseOptions(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// optionsOf writes what in sets as network options, as a user would with
// -o KEY=VALUE; ok is false when in sets a setting the driver has no
// option for.
func optionsOf(in attach.Input) (opts map[string]string, ok bool) {
	opts = attachtest.Texts(in)
	if in.PastaArgs != nil {
		opts["pastaArgs"] = strings.Join(in.PastaArgs, " ")
	}
	return opts, in.SideInterface == "" && in.SideTable == nil && in.SideNetwork == "" && !in.AllowChained
}

// TestParseOptionsRefused: every bad value of the core's table, written as
// a network option, is refused by the core's one check and named as
// netavark's input names it (network.options.KEY, pastaArgs' word); the
// settings the driver has no option for are refused as unknown options.
func TestParseOptionsRefused(t *testing.T) {
	for _, tc := range attachtest.BadSettings() {
		t.Run(tc.Name, func(t *testing.T) {
			opts, ok := optionsOf(tc.Input)
			if !ok {
				key := tc.Setting.String()
				_, err := ParseOptions(map[string]string{key: "x"})
				if msg, code := render(err); code != 7 || !strings.Contains(msg, "network.options."+key+": not an option of the passt-portmap driver") {
					t.Errorf("%s: exit %d, %q", key, code, msg)
				}
				return
			}
			_, err := ParseOptions(opts)
			var ce *attach.ConfigError
			if !errors.As(err, &ce) || ce.Setting != tc.Setting {
				t.Fatalf("ParseOptions(%v) = %v, want the core's refusal of %v", opts, err, tc.Setting)
			}
			want := "network.options." + tc.Setting.String()
			if tc.Entry >= 0 {
				want += "[" + strconv.Itoa(tc.Entry) + "]"
			}
			msg, code := render(err)
			if code != 7 || !strings.Contains(msg, want+": ") || !strings.Contains(msg, tc.Why) || strings.Contains(msg, "configuration key") {
				t.Errorf("exit %d, %q; want 7, %q and %q", code, msg, want, tc.Why)
			}
		})
	}
	// What the driver decodes itself.
	for _, tc := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"verify": "yes"}, `network.options.verify: "yes": want true or false`},
		{map[string]string{"weak": "maybe"}, `network.options.weak: "maybe": want true or false`},
		{map[string]string{"loopbackToHost": "on"}, `network.options.loopbackToHost: "on": want true or false`},
		{map[string]string{"pastaArgs": `["x",1]`}, "network.options.pastaArgs: "},
		{map[string]string{"socket": "/run/x.sock"}, "network.options.socket: not an option of the passt-portmap driver (known: bindInterface"},
		{map[string]string{"zzz": "1", "timeout": "x"}, "network.options.zzz: not an option"},
	} {
		_, err := ParseOptions(tc.opts)
		if msg, code := render(err); code != 7 || !strings.Contains(msg, tc.want) {
			t.Errorf("ParseOptions(%v): exit %d, %q; want 7 and %q", tc.opts, code, msg, tc.want)
		}
	}
}
