package translate

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

const (
	capsAll  = wire.CapIPv4 | wire.CapIPv6 | wire.CapTCP | wire.CapUDP | wire.CapScan | wire.CapIfName
	capsV4   = wire.CapIPv4 | wire.CapTCP | wire.CapUDP
	capsV6   = wire.CapIPv6 | wire.CapTCP | wire.CapUDP
	capsDual = wire.CapIPv4 | wire.CapIPv6 | wire.CapTCP | wire.CapUDP
)

func tcp(host, cont int) PortMapping {
	return PortMapping{HostPort: host, ContainerPort: cont, Protocol: "tcp"}
}

func at(ip string, m PortMapping) PortMapping { m.HostIP = ip; return m }

func proto(p string, m PortMapping) PortMapping { m.Protocol = p; return m }

// strs renders rules in pesto's notation, one per element.
func strs(rs []wire.Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

func TestRules(t *testing.T) {
	v4t := netip.MustParseAddr("10.0.0.2")
	v6t := netip.MustParseAddr("fd00::2")
	for _, tc := range []struct {
		name string
		ms   []PortMapping
		opts Options
		caps wire.Caps
		want []string
	}{
		{"empty", nil, Options{}, capsAll, []string{}},
		{"any both families: dual-stack", []PortMapping{tcp(8080, 80)}, Options{}, capsDual, []string{"TCP [*]:8080  =>  80 "}},
		{"any with IPv4 only", []PortMapping{tcp(8080, 80)}, Options{}, capsV4, []string{"TCP [0.0.0.0]:8080  =>  80 "}},
		{"any with IPv6 only", []PortMapping{tcp(8080, 80)}, Options{}, capsV6, []string{"TCP [::]:8080  =>  80 "}},
		{"0.0.0.0 is IPv4 any", []PortMapping{at("0.0.0.0", tcp(8080, 80))}, Options{}, capsDual, []string{"TCP [0.0.0.0]:8080  =>  80 "}},
		{":: is IPv6 any", []PortMapping{at("::", tcp(8080, 80))}, Options{}, capsDual, []string{"TCP [::]:8080  =>  80 "}},
		{"127.0.0.1", []PortMapping{at("127.0.0.1", tcp(8082, 80))}, Options{}, capsDual, []string{"TCP [127.0.0.1]:8082  =>  80 "}},
		{"::1", []PortMapping{at("::1", tcp(8082, 80))}, Options{}, capsDual, []string{"TCP [::1]:8082  =>  80 "}},
		{"v4-mapped text is IPv4", []PortMapping{at("::ffff:10.1.2.3", tcp(1, 2))}, Options{}, capsV4, []string{"TCP [10.1.2.3]:1  =>  2 "}},
		{"protocol case", []PortMapping{proto("TCP", tcp(1, 1)), proto("Udp", tcp(1, 1))}, Options{}, capsDual,
			[]string{"TCP [*]:1  =>  1 ", "UDP [*]:1  =>  1 "}},
		{"empty protocol is TCP", []PortMapping{proto("", tcp(8080, 80))}, Options{}, capsDual, []string{"TCP [*]:8080  =>  80 "}},
		{"ports 1 and 65535", []PortMapping{tcp(65535, 1), tcp(1, 65535)}, Options{}, capsDual,
			[]string{"TCP [*]:1  =>  65535 ", "TCP [*]:65535  =>  1 "}},
		{"weak", []PortMapping{tcp(8080, 80)}, Options{Weak: true}, capsDual, []string{"TCP [*]:8080  =>  80  (best effort)"}},
		{"interface", []PortMapping{tcp(8080, 80)}, Options{Interface: "eth0"}, capsAll, []string{"TCP [*]%eth0:8080  =>  80 "}},
		{"IPv4 target, any: IPv4 only", []PortMapping{tcp(8080, 80)}, Options{Target: v4t}, capsDual, []string{"TCP [0.0.0.0]:8080  =>  10.0.0.2:80 "}},
		{"IPv6 target, any: IPv6 only", []PortMapping{tcp(8080, 80)}, Options{Target: v6t}, capsDual, []string{"TCP [::]:8080  =>  fd00::2:80 "}},
		{"IPv4 target from loopback", []PortMapping{at("127.0.0.1", tcp(8080, 80))}, Options{Target: v4t}, capsDual, []string{"TCP [127.0.0.1]:8080  =>  10.0.0.2:80 "}},
		{"target of each family, any: a rule of each", []PortMapping{tcp(8080, 80), proto("udp", tcp(53, 53))}, Options{Target: v4t, Target6: v6t}, capsDual,
			[]string{"TCP [::]:8080  =>  fd00::2:80 ", "TCP [0.0.0.0]:8080  =>  10.0.0.2:80 ", "UDP [::]:53  =>  fd00::2:53 ", "UDP [0.0.0.0]:53  =>  10.0.0.2:53 "}},
		{"target of each family, by hostIP", []PortMapping{at("127.0.0.1", tcp(8080, 80)), at("::1", tcp(8080, 80))}, Options{Target: v4t, Target6: v6t}, capsDual,
			[]string{"TCP [::1]:8080  =>  fd00::2:80 ", "TCP [127.0.0.1]:8080  =>  10.0.0.2:80 "}},
		{"target of each family, range", []PortMapping{tcp(8000, 80), tcp(8001, 81)}, Options{Target: v4t, Target6: v6t}, capsDual,
			[]string{"TCP [::]:8000-8001  =>  fd00::2:80-81 ", "TCP [0.0.0.0]:8000-8001  =>  10.0.0.2:80-81 "}},
		{"range", []PortMapping{tcp(8000, 80), tcp(8001, 81), tcp(8002, 82)}, Options{}, capsDual, []string{"TCP [*]:8000-8002  =>  80-82 "}},
		{"range, any order, duplicates", []PortMapping{tcp(8002, 82), tcp(8000, 80), tcp(8001, 81), tcp(8000, 80)}, Options{}, capsDual, []string{"TCP [*]:8000-8002  =>  80-82 "}},
		{"container ports must advance too", []PortMapping{tcp(8000, 80), tcp(8001, 90)}, Options{}, capsDual,
			[]string{"TCP [*]:8000  =>  80 ", "TCP [*]:8001  =>  90 "}},
		{"gap breaks a range", []PortMapping{tcp(8000, 80), tcp(8002, 82)}, Options{}, capsDual,
			[]string{"TCP [*]:8000  =>  80 ", "TCP [*]:8002  =>  82 "}},
		{"same port, two protocols", []PortMapping{tcp(53, 53), proto("udp", tcp(53, 53))}, Options{}, capsDual,
			[]string{"TCP [*]:53  =>  53 ", "UDP [*]:53  =>  53 "}},
		{"same port, IPv4 any and IPv6 any", []PortMapping{at("::", tcp(80, 80)), at("0.0.0.0", tcp(80, 81))}, Options{}, capsDual,
			[]string{"TCP [::]:80  =>  80 ", "TCP [0.0.0.0]:80  =>  81 "}},
		{"same port, two addresses", []PortMapping{at("127.0.0.2", tcp(80, 81)), at("127.0.0.1", tcp(80, 80))}, Options{}, capsDual,
			[]string{"TCP [127.0.0.1]:80  =>  80 ", "TCP [127.0.0.2]:80  =>  81 "}},
		{"ranges per address", []PortMapping{at("::1", tcp(2, 2)), at("127.0.0.1", tcp(1, 1)), at("::1", tcp(1, 1)), at("127.0.0.1", tcp(2, 2))}, Options{}, capsDual,
			[]string{"TCP [::1]:1-2  =>  1-2 ", "TCP [127.0.0.1]:1-2  =>  1-2 "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Rules(tc.ms, tc.opts, tc.caps)
			if err != nil {
				t.Fatalf("Rules: %v", err)
			}
			if got := strs(rs); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
			for _, r := range rs {
				if r.Listen.Is4() || r.Target.Is4() {
					t.Errorf("rule %s: address not in 16-byte form", r)
				}
				if err := checkRule(r, tc.caps); err != nil {
					t.Errorf("rule %s refused: %v", r, err)
				}
			}
		})
	}
}

func TestRulesBytes(t *testing.T) {
	// What the real forwarder reads back for `pesto -t 8080:80` and
	// `-t 127.0.0.1/8082:80` (docs/wire-protocol.md).
	rs, err := Rules([]PortMapping{tcp(8080, 80), at("127.0.0.1", tcp(8082, 80))}, Options{}, capsDual)
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.Rule{
		wire.NewRule(wire.ProtoTCP, netip.IPv6Unspecified(), 8080, 8080, 80, wire.FlagDualStack),
		wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), 8082, 8082, 80, 0),
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d rules, want %d", len(rs), len(want))
	}
	for i := range want {
		if rs[i].Key() != want[i].Key() {
			t.Errorf("rule %d: got % x\nwant % x", i, rs[i].Key(), want[i].Key())
		}
	}
}

func TestRulesErrors(t *testing.T) {
	v4t := netip.MustParseAddr("10.0.0.2")
	for _, tc := range []struct {
		name  string
		ms    []PortMapping
		opts  Options
		caps  wire.Caps
		table bool // *TableError, else *MappingError
		is    error
		msg   string
	}{
		{"sctp", []PortMapping{tcp(1, 1), proto("sctp", tcp(8080, 80))}, Options{}, capsAll, false, ErrProtocol,
			`portMappings entry 1 (hostPort 8080 -> containerPort 80, protocol "sctp"): unsupported protocol "sctp": the forwarder forwards TCP and UDP only`},
		{"SCTP upper case", []PortMapping{proto("SCTP", tcp(8080, 80))}, Options{}, capsAll, false, ErrProtocol,
			`portMappings entry 0 (hostPort 8080 -> containerPort 80, protocol "SCTP"): unsupported protocol "SCTP": the forwarder forwards TCP and UDP only`},
		{"hostPort 0", []PortMapping{tcp(0, 80)}, Options{}, capsAll, false, ErrPort,
			`portMappings entry 0 (hostPort 0 -> containerPort 80, protocol "tcp"): hostPort: port out of range: 0 is not in 1..65535`},
		{"hostPort negative", []PortMapping{tcp(-1, 80)}, Options{}, capsAll, false, ErrPort,
			`portMappings entry 0 (hostPort -1 -> containerPort 80, protocol "tcp"): hostPort: port out of range: -1 is not in 1..65535`},
		{"hostPort 65536", []PortMapping{tcp(65536, 80)}, Options{}, capsAll, false, ErrPort,
			`portMappings entry 0 (hostPort 65536 -> containerPort 80, protocol "tcp"): hostPort: port out of range: 65536 is not in 1..65535`},
		{"containerPort 0", []PortMapping{tcp(80, 0)}, Options{}, capsAll, false, ErrPort,
			`portMappings entry 0 (hostPort 80 -> containerPort 0, protocol "tcp"): containerPort: port out of range: 0 is not in 1..65535`},
		{"containerPort 70000", []PortMapping{tcp(80, 70000)}, Options{}, capsAll, false, ErrPort,
			`portMappings entry 0 (hostPort 80 -> containerPort 70000, protocol "tcp"): containerPort: port out of range: 70000 is not in 1..65535`},
		{"hostIP not an address", []PortMapping{at("localhost", tcp(80, 80))}, Options{}, capsAll, false, ErrAddress,
			`portMappings entry 0 (hostPort 80 -> containerPort 80, protocol "tcp", hostIP "localhost"): hostIP: bad address: "localhost" is not an IP address`},
		{"hostIP with zone", []PortMapping{at("fe80::1%eth0", tcp(80, 80))}, Options{}, capsAll, false, ErrAddress,
			`portMappings entry 0 (hostPort 80 -> containerPort 80, protocol "tcp", hostIP "fe80::1%eth0"): hostIP: bad address: "fe80::1%eth0" has a zone; bind the listeners to an interface with bindInterface instead`},
		{"hostIP multicast", []PortMapping{at("239.1.2.3", tcp(80, 80))}, Options{}, capsAll, false, ErrAddress,
			`portMappings entry 0 (hostPort 80 -> containerPort 80, protocol "tcp", hostIP "239.1.2.3"): hostIP: bad address: "239.1.2.3" is a multicast or broadcast address, which a listener cannot bind`},
		{"target family differs", []PortMapping{at("::1", tcp(80, 80))}, Options{Target: v4t}, capsAll, false, ErrFamily,
			`portMappings entry 0 (hostPort 80 -> containerPort 80, protocol "tcp", hostIP "::1"): address families differ: the listening address ::1 is IPv6 but the target address 10.0.0.2 is IPv4; the forwarder does not translate between families`},
		{"IPv6 target alone", []PortMapping{tcp(80, 80)}, Options{Target6: netip.MustParseAddr("fd00::2")}, capsAll, false, ErrAddress,
			`plugin options: bad address: IPv6 target fd00::2 needs an IPv6 address and an IPv4 target beside it`},
		{"IPv6 target that is IPv4", []PortMapping{tcp(80, 80)}, Options{Target: v4t, Target6: v4t}, capsAll, false, ErrAddress,
			`plugin options: bad address: IPv6 target 10.0.0.2 needs an IPv6 address and an IPv4 target beside it`},
		{"target of each family: any conflicts with ::", []PortMapping{tcp(8080, 80), at("::", tcp(8080, 81))}, Options{Target: v4t, Target6: netip.MustParseAddr("fd00::2")}, capsAll, false, ErrConflict,
			`portMappings entry 1 (hostPort 8080 -> containerPort 81, protocol "tcp", hostIP "::"): conflict: it and entry 0 (hostPort 8080 -> containerPort 80, protocol "tcp") both claim TCP host port 8080 with different container ports 80 and 81`},
		{"target of each family, IPv6 without IPv6", []PortMapping{tcp(80, 80)}, Options{Target: v4t, Target6: netip.MustParseAddr("fd00::2")}, capsV4, true, ErrCapability,
			`pif HOST: rule TCP [::]:80  =>  fd00::2:80 : capability missing: IPv6 listening address, but the table has no IPv6 (caps IPv4|TCP|UDP) (rule made from portMappings entry 0)`},
		{"different container ports", []PortMapping{tcp(8080, 80), tcp(9000, 90), tcp(8080, 81)}, Options{}, capsAll, false, ErrConflict,
			`portMappings entry 2 (hostPort 8080 -> containerPort 81, protocol "tcp"): conflict: it and entry 0 (hostPort 8080 -> containerPort 80, protocol "tcp") both claim TCP host port 8080 with different container ports 80 and 81`},
		{"any and 0.0.0.0", []PortMapping{at("0.0.0.0", tcp(8080, 80)), tcp(8080, 80)}, Options{}, capsAll, false, ErrConflict,
			`portMappings entry 1 (hostPort 8080 -> containerPort 80, protocol "tcp"): conflict: it and entry 0 (hostPort 8080 -> containerPort 80, protocol "tcp", hostIP "0.0.0.0") both claim TCP host port 8080 on overlapping addresses`},
		{"0.0.0.0 and 127.0.0.1", []PortMapping{at("127.0.0.1", tcp(8080, 80)), at("0.0.0.0", tcp(8080, 80))}, Options{}, capsAll, false, ErrConflict,
			`portMappings entry 1 (hostPort 8080 -> containerPort 80, protocol "tcp", hostIP "0.0.0.0"): conflict: it and entry 0 (hostPort 8080 -> containerPort 80, protocol "tcp", hostIP "127.0.0.1") both claim TCP host port 8080 on overlapping addresses`},
		{":: and ::1", []PortMapping{at("::", tcp(8080, 80)), at("::1", tcp(8080, 81))}, Options{}, capsAll, false, ErrConflict,
			`portMappings entry 1 (hostPort 8080 -> containerPort 81, protocol "tcp", hostIP "::1"): conflict: it and entry 0 (hostPort 8080 -> containerPort 80, protocol "tcp", hostIP "::") both claim TCP host port 8080 on overlapping addresses`},
		{"any and ::", []PortMapping{at("::", tcp(8080, 80)), tcp(8080, 80)}, Options{}, capsAll, false, ErrConflict,
			`portMappings entry 1 (hostPort 8080 -> containerPort 80, protocol "tcp"): conflict: it and entry 0 (hostPort 8080 -> containerPort 80, protocol "tcp", hostIP "::") both claim TCP host port 8080 on overlapping addresses`},
		{"same address, different ports", []PortMapping{at("127.0.0.1", tcp(8080, 80)), at("127.0.0.1", tcp(8080, 81))}, Options{}, capsAll, false, ErrConflict,
			`portMappings entry 1 (hostPort 8080 -> containerPort 81, protocol "tcp", hostIP "127.0.0.1"): conflict: it and entry 0 (hostPort 8080 -> containerPort 80, protocol "tcp", hostIP "127.0.0.1") both claim TCP host port 8080 with different container ports 80 and 81`},
		{"interface too long", []PortMapping{tcp(80, 80)}, Options{Interface: "a-very-long-interface"}, capsAll, false, ErrInterface,
			`plugin options: bad interface name: interface name "a-very-long-interface": longer than 15 bytes or holds a NUL`},
		{"interface .", []PortMapping{tcp(80, 80)}, Options{Interface: ".."}, capsAll, false, ErrInterface,
			`plugin options: bad interface name: interface name ".." is not a valid Linux device name`},
		{"interface with a slash", []PortMapping{tcp(80, 80)}, Options{Interface: "eth0/1"}, capsAll, false, ErrInterface,
			`plugin options: bad interface name: interface name "eth0/1" is not a valid Linux device name`},
		{"target unspecified", []PortMapping{tcp(80, 80)}, Options{Target: netip.IPv4Unspecified()}, capsAll, false, ErrAddress,
			`plugin options: bad address: target address 0.0.0.0: unspecified; leave the target out to use the container's default address`},
		{"target multicast", []PortMapping{tcp(80, 80)}, Options{Target: netip.MustParseAddr("224.0.0.1")}, capsAll, false, ErrAddress,
			`plugin options: bad address: target address 224.0.0.1: multicast or broadcast; the forwarder needs a unicast target`},
		{"target broadcast", []PortMapping{tcp(80, 80)}, Options{Target: netip.MustParseAddr("255.255.255.255")}, capsAll, false, ErrAddress,
			`plugin options: bad address: target address 255.255.255.255: multicast or broadcast; the forwarder needs a unicast target`},
		{"target IPv6 multicast", []PortMapping{tcp(80, 80)}, Options{Target: netip.MustParseAddr("ff02::1")}, capsAll, false, ErrAddress,
			`plugin options: bad address: target address ff02::1: multicast or broadcast; the forwarder needs a unicast target`},
		{"target zone", []PortMapping{tcp(80, 80)}, Options{Target: netip.MustParseAddr("fe80::1%eth0")}, capsAll, false, ErrAddress,
			`plugin options: bad address: target address fe80::1%eth0: a zone cannot be given to the forwarder`},
		// The table cannot take it: *TableError.
		{"no TCP", []PortMapping{tcp(80, 80)}, Options{}, wire.CapIPv4 | wire.CapIPv6 | wire.CapUDP, true, ErrCapability,
			`pif HOST: rule TCP [*]:80  =>  80 : capability missing: TCP rule, but the table has no TCP (caps IPv4|IPv6|UDP) (rule made from portMappings entry 0)`},
		{"no UDP", []PortMapping{proto("udp", tcp(80, 80))}, Options{}, capsDual &^ wire.CapUDP, true, ErrCapability,
			`pif HOST: rule UDP [*]:80  =>  80 : capability missing: UDP rule, but the table has no UDP (caps IPv4|IPv6|TCP) (rule made from portMappings entry 0)`},
		{"no IPv4 for 127.0.0.1", []PortMapping{at("127.0.0.1", tcp(80, 80))}, Options{}, capsV6, true, ErrCapability,
			`pif HOST: rule TCP [127.0.0.1]:80  =>  80 : capability missing: IPv4 listening address, but the table has no IPv4 (caps IPv6|TCP|UDP) (rule made from portMappings entry 0)`},
		{"no IPv6 for ::1", []PortMapping{at("::1", tcp(80, 80))}, Options{}, capsV4, true, ErrCapability,
			`pif HOST: rule TCP [::1]:80  =>  80 : capability missing: IPv6 listening address, but the table has no IPv6 (caps IPv4|TCP|UDP) (rule made from portMappings entry 0)`},
		{"no family at all", []PortMapping{tcp(80, 80)}, Options{}, wire.CapTCP, true, ErrCapability,
			`pif HOST: capability missing: hostIP "" listens on every address, but the table has neither IPv4 nor IPv6 (caps TCP) (rule made from portMappings entry 0)`},
		{"IPv4 target without IPv4", []PortMapping{tcp(80, 80)}, Options{Target: v4t}, capsV6, true, ErrCapability,
			`pif HOST: rule TCP [0.0.0.0]:80  =>  10.0.0.2:80 : capability missing: IPv4 listening address, but the table has no IPv4 (caps IPv6|TCP|UDP) (rule made from portMappings entry 0)`},
		{"interface without the capability", []PortMapping{tcp(80, 80)}, Options{Interface: "eth0"}, capsDual, true, ErrCapability,
			`pif HOST: capability missing: the interface option needs binding to an interface, which the table cannot do (caps IPv4|IPv6|TCP|UDP) (rule made from portMappings entry 0)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Rules(tc.ms, tc.opts, tc.caps)
			if err == nil {
				t.Fatal("no error")
			}
			var me *MappingError
			var te *TableError
			if tc.table && !errors.As(err, &te) {
				t.Errorf("error %T, want *TableError", err)
			}
			if !tc.table && !errors.As(err, &me) {
				t.Errorf("error %T, want *MappingError", err)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v", tc.is)
			}
			if err.Error() != tc.msg {
				t.Errorf("message\n got %s\nwant %s", err, tc.msg)
			}
		})
	}
}

func TestCompactTenThousand(t *testing.T) {
	var ms []PortMapping
	for i := range 10000 {
		ms = append(ms, tcp(20000+i, 30000+i))
	}
	// Reverse, so that the input order is the worst one.
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	c, err := Compile(ms, Options{}, capsDual)
	if err != nil {
		t.Fatal(err)
	}
	if got := strs(c.Rules); len(got) != 1 || got[0] != "TCP [*]:20000-29999  =>  30000-39999 " {
		t.Fatalf("got %q", got)
	}
	e := c.Entries(c.Rules[0])
	if len(e) != 10000 || e[0] != 0 || e[9999] != 9999 {
		t.Fatalf("entries: %d of them, %v..%v", len(e), e[:1], e[len(e)-1:])
	}
}

func TestTooManyRules(t *testing.T) {
	var ms []PortMapping
	for i := range 300 {
		ms = append(ms, tcp(1000+2*i, 80)) // every other port: no range
	}
	_, err := Rules(ms, Options{}, capsDual)
	var te *TableError
	if !errors.As(err, &te) || !errors.Is(err, ErrTooMany) {
		t.Fatalf("got %v", err)
	}
	want := "pif HOST: limit exceeded: the mappings need 300 rules after compaction, 45 over the forwarder's limit of 255 per table"
	if err.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", err, want)
	}
}

func TestEntryList(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{
		{[]int{3}, "entry 3"},
		{[]int{0, 1, 2, 5}, "entries 0-2, 5"},
		{[]int{0, 2, 4, 6, 8, 10, 12, 13, 14, 20}, "entries 0, 2, 4, 6, 8, 10 and 4 more"},
	} {
		if got := entryList(tc.in); got != tc.want {
			t.Errorf("entryList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
