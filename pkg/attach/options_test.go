package attach_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/attach/attachtest"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

func ptr[T any](v T) *T { return &v }

// TestInputOptions: what a front end decoded becomes the core's options,
// with the core's defaults for what it left out.
func TestInputOptions(t *testing.T) {
	def := attach.Options{Timeout: attach.DefaultTimeout, Verify: true}
	for _, tc := range []struct {
		name string
		in   attach.Input
		want attach.Options
	}{
		{"nothing: the defaults", attach.Input{}, def},
		{"everything", attach.Input{DataDir: "/run/pp/../pp2/", Timeout: "250ms", Verify: ptr(false), Weak: true,
			Pasta: "/usr/bin/pasta", PastaArgs: []string{"--mtu", "1400"}, MapHostLoopback: "169.254.1.2, fd99::2", LoopbackToHost: true,
			TargetAddress: "10.0.2.15", BindInterface: "eth1", AllowChained: true,
			SideInterface: "side0", SideTable: ptr(7), SideNetwork: "fd00:1::/112, 169.254.9.0/29"},
			attach.Options{DataDir: "/run/pp2", Timeout: 250 * time.Millisecond, Verify: false, Weak: true,
				Pasta: "/usr/bin/pasta", PastaArgs: []string{"--mtu", "1400"},
				MapHostLoopback: []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("fd99::2")}, LoopbackToHost: true,
				TargetAddress: netip.MustParseAddr("10.0.2.15"), BindInterface: "eth1", AllowChained: true,
				Side: attach.SideOptions{IfName: "side0", Table: 7, Network4: netip.MustParsePrefix("169.254.9.0/29"), Network6: netip.MustParsePrefix("fd00:1::/112")}}},
		{"pasta by name", attach.Input{Pasta: "pasta"}, func() attach.Options { o := def; o.Pasta = "pasta"; return o }()},
		{"verify said true", attach.Input{Verify: ptr(true)}, def},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Options()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestInputOptionsRefused: every bad value is refused by the one check,
// named by its setting (and the entry of a list).
func TestInputOptionsRefused(t *testing.T) {
	for _, tc := range attachtest.BadSettings() {
		t.Run(tc.Name, func(t *testing.T) {
			_, err := tc.Input.Options()
			var ce *attach.ConfigError
			if !errors.As(err, &ce) || ce.Setting != tc.Setting || ce.List != (tc.Entry >= 0) || tc.Entry >= 0 && ce.Entry != tc.Entry {
				t.Fatalf("%v (%+v), want a refusal of %v entry %d", err, ce, tc.Setting, tc.Entry)
			}
			if !strings.Contains(err.Error(), tc.Why) {
				t.Errorf("%q does not say %q", err, tc.Why)
			}
			if d := attach.Describe(err, nil); d.Kind != attach.KindBadConfig || !strings.HasPrefix(d.Details, tc.Setting.String()) {
				t.Errorf("described as %v", d)
			}
		})
	}
}

// TestBadSettingsCover: the shared table has a bad value of every setting
// that Input carries as text, so that every front end's test reaches
// every check.
func TestBadSettingsCover(t *testing.T) {
	covered := map[attach.Setting]bool{}
	for _, tc := range attachtest.BadSettings() {
		covered[tc.Setting] = true
	}
	for _, s := range attach.Settings() {
		switch s {
		case attach.SettingSocket, attach.SettingAllowChained, attach.SettingLoopbackToHost, attach.SettingWeak, attach.SettingVerify:
			continue // not text in Input: the front ends decode them
		}
		if !covered[s] {
			t.Errorf("no bad value of %v", s)
		}
	}
}

// TestCheck: options a caller made by hand are checked at every entry
// point, as those Input made.
func TestCheck(t *testing.T) {
	o := attach.Options{DataDir: "/a/../b/"}
	if err := o.Check(); err != nil || o.DataDir != "/b" {
		t.Errorf("clean data directory: %q, %v", o.DataDir, err)
	}
	for _, tc := range []struct {
		o       attach.Options
		setting attach.Setting
	}{
		{attach.Options{DataDir: "rel"}, attach.SettingDataDir},
		{attach.Options{Timeout: -time.Second}, attach.SettingTimeout},
		{attach.Options{PastaArgs: []string{"--netns", "/x"}}, attach.SettingPastaArgs},
		{attach.Options{TargetAddress: netip.MustParseAddr("0.0.0.0")}, attach.SettingTargetAddress},
		{attach.Options{MapHostLoopback: []netip.Addr{netip.MustParseAddr("::1")}}, attach.SettingMapHostLoopback},
		{attach.Options{BindInterface: "a b"}, attach.SettingBindInterface},
		{attach.Options{Side: attach.SideOptions{Network4: netip.MustParsePrefix("fd00::/64")}}, attach.SettingSideNetwork},
		{attach.Options{Side: attach.SideOptions{Table: 255}}, attach.SettingSideTable},
	} {
		err := tc.o.Check()
		var ce *attach.ConfigError
		if !errors.As(err, &ce) || ce.Setting != tc.setting {
			t.Errorf("%+v: %v, want a refusal of %v", tc.o, err, tc.setting)
		}
	}
}

// TestCheckMappings: every bad field is refused by the one check, named
// by the mapping's index and the field; good mappings pass.
func TestCheckMappings(t *testing.T) {
	for _, tc := range attachtest.BadMappings() {
		t.Run(tc.Name, func(t *testing.T) {
			err := attach.CheckMappings([]attach.Mapping{attachtest.Good, tc.Mapping})
			var me *attach.MappingError
			if !errors.As(err, &me) || me.Index != 1 || me.Field != tc.Field || !strings.Contains(err.Error(), tc.Why) {
				t.Fatalf("%v (%+v), want mapping 1's %v: %s", err, me, tc.Field, tc.Why)
			}
			if !errors.Is(err, translate.ErrPort) && !errors.Is(err, translate.ErrProtocol) && !errors.Is(err, translate.ErrAddress) {
				t.Errorf("%v wraps none of translate's reasons", err)
			}
			if d := attach.Describe(err, nil); d.Kind != attach.KindBadConfig || !strings.Contains(d.Details, "portMappings[1]."+tc.Field.String()+": ") {
				t.Errorf("described as %v", d)
			}
		})
	}
	good := []attach.Mapping{
		{HostPort: 65535, ContainerPort: 65535},
		{HostIP: "::1", HostPort: 65534, ContainerPort: 1, Range: 2, Protocols: []string{"UDP", "tcp", "udp"}},
		{HostIP: "127.0.0.1", HostPort: 1, ContainerPort: 1, Range: 0, Protocols: []string{""}},
	}
	if err := attach.CheckMappings(good); err != nil {
		t.Errorf("good mappings: %v", err)
	}
}

// TestKindCodes: the one table from kind to number, the README's error
// table; what cannot be named takes the runtime's own number.
func TestKindCodes(t *testing.T) {
	want := map[attach.Kind]int{
		attach.KindBadConfig: 7, attach.KindUnreachable: 11, attach.KindNotAvailable: 50,
		attach.KindSafeFail: 100, attach.KindSocketFail: 101, attach.KindRollbackFail: 102, attach.KindMismatch: 103,
		attach.KindCheckFailed: 104, attach.KindIO: 5, attach.KindUnknown: -1,
	}
	kinds := attach.Kinds()
	if len(kinds) != len(want) {
		t.Fatalf("%d kinds, the table has %d", len(kinds), len(want))
	}
	for _, k := range kinds {
		if got := k.Code(-1); got != want[k] {
			t.Errorf("%v: code %d, want %d", k, got, want[k])
		}
	}
}

// TestEntryPointsCheck: every entry point of the core checks the options
// it is given, whoever made them, before it touches anything.
func TestEntryPointsCheck(t *testing.T) {
	dir := t.TempDir()
	bad := attach.Options{DataDir: filepath.Join(dir, "d"), Socket: filepath.Join(dir, "s"), PastaArgs: []string{"--runas", "0"}}
	k := attach.Key{Network: "n", ContainerID: "c", IfName: "eth0"}
	c := &attach.Core{}
	ctx := context.Background()
	_, addErr := c.Add(ctx, k, bad, nil)
	for name, err := range map[string]error{
		"Add":    addErr,
		"Del":    c.Del(ctx, k, bad, nil),
		"Check":  c.Check(ctx, k, bad, nil),
		"GC":     c.GC(ctx, "n", bad, nil),
		"Status": c.Status(ctx, bad),
	} {
		var ce *attach.ConfigError
		if !errors.As(err, &ce) || ce.Setting != attach.SettingPastaArgs {
			t.Errorf("%s: %v, want the refusal of pastaArgs", name, err)
		}
	}
	if des, err := os.ReadDir(dir); err != nil || len(des) != 0 {
		t.Errorf("refused calls left %v (%v)", des, err)
	}
}
