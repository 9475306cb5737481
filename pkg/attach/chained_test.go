package attach

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/sidenet"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// TestModeOf is the chained policy, case by case.
func TestModeOf(t *testing.T) {
	pod := &Prior{Interfaces: []PriorInterface{{Name: "cni0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: true}}, IPv4: true}
	hostOnly := &Prior{Interfaces: []PriorInterface{{Name: "veth1"}}}
	noIfs := &Prior{IPv4: true}
	for _, tc := range []struct {
		name string
		o    Options
		want mode
		err  string
	}{
		{"a socket: attached", Options{Socket: "/s", Prior: pod}, modeAttached, ""},
		{"a socket under Kubernetes: attached", Options{Socket: "/s", Kubernetes: true}, modeAttached, ""},
		{"alone: managed", Options{Managed: true}, modeManaged, ""},
		{"alone with allowChained: managed", Options{Managed: true, AllowChained: true}, modeManaged, ""},
		{"after a pod network: chained", Options{Managed: true, Prior: pod}, modeChained, ""},
		{"after a pod network under Kubernetes: chained", Options{Managed: true, Prior: pod, Kubernetes: true}, modeChained, ""},
		{"after a pod network with allowChained: a second network", Options{Managed: true, Prior: pod, AllowChained: true}, modeSecond, ""},
		{"a previous result without interfaces: managed", Options{Managed: true, Prior: noIfs}, modeManaged, ""},
		{"host interfaces only: refused", Options{Managed: true, Prior: hostOnly}, 0, `the previous result names interface "veth1" but none in the container's namespace`},
		{"alone under Kubernetes: refused", Options{Managed: true, Kubernetes: true}, 0, `chain passt-portmap after the pod network instead, in place of portmap`},
		{"alone under Kubernetes with allowChained: refused", Options{Managed: true, Kubernetes: true, AllowChained: true}, 0, "pod IP would be pasta's copy of the node's address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := modeOf(&tc.o)
			if tc.err != "" {
				var e *Error
				if !errors.As(err, &e) || e.Kind != KindBadConfig || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want a bad configuration saying %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestCheckChainedOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		key  string
	}{
		{"fine", Options{PastaArgs: []string{"-d", "--log-size", "100000"}}, ""},
		{"a target", Options{TargetAddress: netip.MustParseAddr("10.0.0.2")}, "targetAddress"},
		{"host loopback", Options{MapHostLoopback: []netip.Addr{netip.MustParseAddr("169.254.1.2")}}, "mapHostLoopback"},
		{"loopback to host", Options{LoopbackToHost: true}, "loopbackToHost"},
		{"a network option", Options{PastaArgs: []string{"-d", "--mtu", "1400"}}, "pastaArgs[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkChainedOptions(&tc.o)
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(ce.Error(), tc.key+": ") {
				t.Fatalf("got %v, want a configuration error naming %s", err, tc.key)
			}
			// Named by the setting, in the front end's words.
			if d := Describe(err, otherDialect{}); !strings.Contains(d.Details, "option opt-"+tc.key+": ") {
				t.Errorf("in another front end's words: %q", d.Details)
			}
		})
	}
}

func TestPlanSide(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string // Addr4 Addr6 IfName Table
	}{
		{"IPv4 pod, defaults", Options{Prior: &Prior{IPv4: true}}, "169.254.100.2/30 invalid Prefix pasta0 20563"},
		{"dual-stack pod", Options{Prior: &Prior{IPv4: true, IPv6: true}}, "169.254.100.2/30 fd41:e00e:44f8::2/64 pasta0 20563"},
		{"IPv6-only pod: IPv4 side too", Options{Prior: &Prior{IPv6: true}}, "169.254.100.2/30 fd41:e00e:44f8::2/64 pasta0 20563"},
		{"configured", Options{Prior: &Prior{IPv4: true, IPv6: true}, Side: SideOptions{IfName: "side0", Table: 7,
			Network4: netip.MustParsePrefix("169.254.9.0/29"), Network6: netip.MustParsePrefix("fd00:1::/112")}},
			"169.254.9.2/29 fd00:1::2/112 side0 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := planSide(&tc.o, "/run/netns/p")
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join([]string{s.Addr4.String(), s.Addr6.String(), s.IfName, strconv.Itoa(s.Table)}, " ")
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// A record can make the plugin remove rules in the namespace it names:
// only a side the plugin could have set up is taken from one.
func TestRecordedSide(t *testing.T) {
	good := sideRecord(sidenet.Side{IfName: "pasta0", Table: 20563, Priority: sidenet.Priority,
		Addr4: netip.MustParsePrefix("169.254.100.2/30"), Gateway4: netip.MustParseAddr("169.254.100.1")})
	for _, tc := range []struct {
		name  string
		netns string
		edit  func(*store.Side)
		err   string
	}{
		{"good", "/run/netns/p", func(*store.Side) {}, ""},
		{"relative namespace", "p", func(*store.Side) {}, "not absolute"},
		{"the main table", "/run/netns/p", func(s *store.Side) { s.Table = 254 }, "side routing table 254"},
		{"a global address", "/run/netns/p", func(s *store.Side) {
			s.Addr4, s.Gateway4 = netip.MustParsePrefix("10.0.0.2/30"), netip.MustParseAddr("10.0.0.1")
		}, "want an IPv4 link-local prefix"},
		{"no address", "/run/netns/p", func(s *store.Side) { s.Addr4, s.Gateway4 = netip.Prefix{}, netip.Addr{} }, "no address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			side := *good
			tc.edit(&side)
			rec := &store.Record{Network: "n", ContainerID: "c", IfName: "eth0", Netns: tc.netns, Side: &side}
			_, err := recordedSide(rec)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var rse *recordSideError
			if !errors.As(err, &rse) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
			if d := Describe(err, nil); d.Kind != KindIO {
				t.Errorf("described as %v, want I/O", d.Kind)
			}
		})
	}
}

func TestSideError(t *testing.T) {
	clash := &sidenet.ClashError{NetNS: "/p", Clashes: []sidenet.Clash{
		{What: sidenet.PartNetwork, Detail: "a"}, {What: sidenet.PartInterface, Detail: "b"}, {What: sidenet.PartNetwork, Detail: "c"}}}
	var ce *ConfigError
	if err := sideError(clash); !errors.As(err, &ce) || !strings.HasPrefix(ce.Error(), "sideInterface, sideNetwork: the side interface would clash") ||
		!strings.Contains(Describe(err, otherDialect{}).Details, "option opt-sideInterface, opt-sideNetwork: ") {
		t.Errorf("clash: %v", err)
	}
	if err := sideError(&forwarder.OutboundError{Addr: netip.MustParseAddr("169.254.100.1"), Interface: "eth9"}); !errors.As(err, &ce) || !strings.HasPrefix(ce.Error(), "sideNetwork: the node has the side gateway address") ||
		!strings.Contains(Describe(err, otherDialect{}).Details, "option opt-sideNetwork: ") {
		t.Errorf("outbound: %v", err)
	}
	other := errors.New("x")
	if sideError(other) != other {
		t.Error("another error changed")
	}
}

// The chained compiler forwards each family to its own side address, and
// a mapping of a family the side lacks is explained as the pod's.
func TestChainedTargets(t *testing.T) {
	a4, a6 := netip.MustParsePrefix("169.254.100.2/30"), netip.MustParsePrefix("fd41:e00e:44f8::2/64")
	ms := []Mapping{{HostPort: 8080, ContainerPort: 80, Protocols: []string{"tcp", "udp"}}, {HostIP: "::1", HostPort: 9000, ContainerPort: 90}}
	c, err := newCompiler(ms, &Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.chainedTargets(a4, a6)
	rules, err := c.rules(allCaps)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, strings.TrimSpace(r.String()))
	}
	want := "TCP [::]:8080  =>  fd41:e00e:44f8::2:80|TCP [::1]:9000  =>  fd41:e00e:44f8::2:90|TCP [0.0.0.0]:8080  =>  169.254.100.2:80|UDP [::]:8080  =>  fd41:e00e:44f8::2:80|UDP [0.0.0.0]:8080  =>  169.254.100.2:80"
	if strings.Join(got, "|") != want {
		t.Errorf("rules\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	for _, r := range rules {
		if r.Flags.Has(wire.FlagDualStack) {
			t.Errorf("%s is dual-stack: pasta refuses a target there", r)
		}
	}

	c.chainedTargets(a4, netip.Prefix{})
	_, err = c.rules(allCaps)
	if !errors.Is(err, translate.ErrFamily) {
		t.Fatalf("IPv6 hostIP without an IPv6 side: %v", err)
	}
	err = familyNote(err, &sidenet.Side{Addr4: a4})
	if d := Describe(err, nil); d.Kind != KindBadConfig || !strings.Contains(d.Error(), "the pod has no IPv6 address in the previous result") {
		t.Errorf("described: %v", d)
	}
}

// TestFamilyNoteChainedOnly: a mapping whose family differs from the
// target address's is explained by the side interface only when the
// attachment is chained; an attached or managed one has no side.
func TestFamilyNoteChainedOnly(t *testing.T) {
	ms := []Mapping{{HostIP: "::1", HostPort: 8080, ContainerPort: 80}}
	o := Options{DataDir: t.TempDir(), Socket: "/nonexistent/pp.sock", TargetAddress: netip.MustParseAddr("10.0.0.5")}
	_, err := (&Core{}).Add(t.Context(), Key{Network: "n", ContainerID: "c", IfName: "eth0"}, o, ms)
	if !errors.Is(err, translate.ErrFamily) {
		t.Fatalf("IPv6 hostIP to an IPv4 target: %v", err)
	}
	d := Describe(err, nil)
	if d.Kind != KindBadConfig || !strings.Contains(d.Error(), "portMappings[0].hostIP") {
		t.Errorf("described: %v", d)
	}
	if strings.Contains(d.Error(), "side interface") || strings.Contains(d.Error(), "previous result") {
		t.Errorf("an attached attachment's error talks of a chained side: %v", d)
	}
}
