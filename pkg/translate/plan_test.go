package translate

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

func rule(p wire.Proto, listen string, first, last, to uint16, flags wire.Flags) wire.Rule {
	a := netip.IPv6Unspecified()
	if listen != "" {
		a = netip.MustParseAddr(listen)
	}
	return wire.NewRule(p, a, first, last, to, flags)
}

func withTarget(r wire.Rule, t string) wire.Rule {
	r.Target = wire.To16(netip.MustParseAddr(t))
	return r
}

func withIf(r wire.Rule, name string) wire.Rule {
	if err := r.SetInterface(name); err != nil {
		panic(err)
	}
	return r
}

// splice are the four rules pasta puts in its SPLICE table by itself.
func splice() []wire.Rule {
	var rs []wire.Rule
	for _, p := range []wire.Proto{wire.ProtoTCP, wire.ProtoUDP} {
		rs = append(rs,
			withIf(rule(p, "", 1, 32767, 1, 0x07), "lo"),
			withIf(rule(p, "", 61000, 65535, 61000, 0x07), "lo"))
	}
	return rs
}

func host(rules ...wire.Rule) wire.Table { return wire.NewTable(1, wire.PifHost, capsAll, rules...) }

func enc(t wire.Table) []byte { return wire.Tables{t}.AppendServer(nil) }

func TestPlanEdits(t *testing.T) {
	a := rule(wire.ProtoTCP, "", 8080, 8080, 80, wire.FlagDualStack)
	b := rule(wire.ProtoTCP, "", 8080, 8080, 81, wire.FlagDualStack) // replaces a
	c := rule(wire.ProtoUDP, "127.0.0.1", 53, 53, 53, 0)
	f := rule(wire.ProtoTCP, "::1", 9000, 9010, 9000, 0) // someone else's
	for _, tc := range []struct {
		name           string
		table          wire.Table
		owned, desired []wire.Rule
		remove, add    []wire.Rule
		result         []wire.Rule
	}{
		{"add to empty", host(), nil, []wire.Rule{a, c}, nil, []wire.Rule{a, c}, []wire.Rule{a, c}},
		{"add beside foreign", host(f), nil, []wire.Rule{a}, nil, []wire.Rule{a}, []wire.Rule{f, a}},
		{"remove all", host(a, f, c), []wire.Rule{a, c}, nil, []wire.Rule{a, c}, nil, []wire.Rule{f}},
		{"remove absent is fine", host(f), []wire.Rule{a}, nil, []wire.Rule{a}, nil, []wire.Rule{f}},
		{"same again keeps places", host(a, f, c), []wire.Rule{a, c}, []wire.Rule{c, a}, nil, []wire.Rule{c, a}, []wire.Rule{a, f, c}},
		{"adopt a present rule", host(a, f), nil, []wire.Rule{a}, nil, []wire.Rule{a}, []wire.Rule{a, f}},
		{"change a target port", host(a, f), []wire.Rule{a}, []wire.Rule{b}, []wire.Rule{a}, []wire.Rule{b}, []wire.Rule{f, b}},
		{"repeats collapse", host(), []wire.Rule{a, a}, []wire.Rule{c, c}, []wire.Rule{a}, []wire.Rule{c}, []wire.Rule{c}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Plan(tc.table, tc.owned, tc.desired)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if e.Pif != wire.PifHost {
				t.Errorf("pif %q", e.Pif)
			}
			if g, w := strings.Join(strs(e.Remove), "|"), strings.Join(strs(tc.remove), "|"); g != w {
				t.Errorf("Remove %q, want %q", g, w)
			}
			if g, w := strings.Join(strs(e.Add), "|"), strings.Join(strs(tc.add), "|"); g != w {
				t.Errorf("Add %q, want %q", g, w)
			}
			next := tc.table.Apply(e)
			if !bytes.Equal(enc(next), enc(host(tc.result...))) {
				t.Errorf("result %q, want %q", strs(next.Rules), strs(tc.result))
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	dual := rule(wire.ProtoTCP, "", 8080, 8080, 80, wire.FlagDualStack)
	lo := rule(wire.ProtoTCP, "127.0.0.1", 8080, 8080, 81, 0)
	many := func(n int) []wire.Rule {
		var rs []wire.Rule
		for i := range n {
			rs = append(rs, rule(wire.ProtoUDP, "::1", uint16(1000+i), uint16(1000+i), 80, 0))
		}
		return rs
	}
	full := func(p wire.Proto, a string) wire.Rule { return rule(p, a, 1, 65535, 1, 0) }
	bad := rule(wire.ProtoTCP, "::1", 1, 1, 1, 0)
	copy(bad.IfName[:], "0123456789abcdef")
	for _, tc := range []struct {
		name           string
		table          wire.Table
		owned, desired []wire.Rule
		is             error
		other          bool
		msg            string
	}{
		{"conflict with a rule of another", host(dual), nil, []wire.Rule{lo}, ErrConflict, true,
			"pif HOST: conflict: rule TCP [127.0.0.1]:8080  =>  81  overlaps a rule already in the table, TCP [*]:8080  =>  80 "},
		{"conflict between new rules", host(), nil, []wire.Rule{dual, lo}, ErrConflict, true,
			"pif HOST: conflict: rule TCP [127.0.0.1]:8080  =>  81  overlaps another rule being added, TCP [*]:8080  =>  80 "},
		{"range overlap", host(rule(wire.ProtoUDP, "0.0.0.0", 100, 200, 100, 0)), nil, []wire.Rule{rule(wire.ProtoUDP, "10.0.0.1", 200, 300, 200, 0)}, ErrConflict, true,
			"pif HOST: conflict: rule UDP [10.0.0.1]:200-300  =>  200-300  overlaps a rule already in the table, UDP [0.0.0.0]:100-200  =>  100-200 "},
		{"interface does not separate", host(withIf(lo, "eth0")), nil, []wire.Rule{withIf(lo, "eth1")}, ErrConflict, true,
			"pif HOST: conflict: rule TCP [127.0.0.1]%eth1:8080  =>  81  overlaps a rule already in the table, TCP [127.0.0.1]%eth0:8080  =>  81 "},
		{"too many rules", host(many(250)...), nil, many(260)[250:], ErrTooMany, false,
			"pif HOST: limit exceeded: the table would hold 260 rules, 5 over the forwarder's limit of 255 (first rule over the limit: UDP [::1]:1255  =>  80 )"},
		{"too many ports", host(full(wire.ProtoTCP, "127.0.0.1"), full(wire.ProtoTCP, "127.0.0.2"), full(wire.ProtoTCP, "127.0.0.3"), full(wire.ProtoTCP, "127.0.0.4"), full(wire.ProtoTCP, "127.0.0.5")),
			nil, []wire.Rule{rule(wire.ProtoTCP, "127.0.0.6", 1, 10, 1, 0)}, ErrTooMany, false,
			"pif HOST: limit exceeded: the table would need 327685 listening ports, 5 over the forwarder's limit of 327680 (first rule over the limit: TCP [127.0.0.6]:1-10  =>  1-10 )"},
		{"capability", wire.NewTable(1, wire.PifHost, capsV4), nil, []wire.Rule{dual}, ErrCapability, false,
			"pif HOST: rule TCP [*]:8080  =>  80 : capability missing: dual-stack rule, but the table has no IPv6 (caps IPv4|TCP|UDP)"},
		{"interface capability", wire.NewTable(1, wire.PifHost, capsDual), nil, []wire.Rule{withIf(lo, "eth0")}, ErrCapability, false,
			"pif HOST: capability missing: rule TCP [127.0.0.1]%eth0:8080  =>  81  binds to an interface, but the table cannot (caps IPv4|IPv6|TCP|UDP)"},
		{"a bad rule already there", host(bad), nil, []wire.Rule{lo}, ErrInvalid, false,
			"pif HOST: rule TCP [::1]%0123456789abcdef:1  =>  1 , already in the table, would be refused: rule refused by the forwarder: interface name is not NUL-terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(tc.table, tc.owned, tc.desired)
			var te *TableError
			if !errors.As(err, &te) {
				t.Fatalf("got %v (%T), want *TableError", err, err)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v", tc.is)
			}
			if (te.Other != nil) != tc.other {
				t.Errorf("Other = %v", te.Other)
			}
			if err.Error() != tc.msg {
				t.Errorf("message\n got %q\nwant %q", err, tc.msg)
			}
		})
	}
}

func TestCheckRule(t *testing.T) {
	ok := rule(wire.ProtoTCP, "127.0.0.1", 10, 20, 100, 0)
	mod := func(f func(*wire.Rule)) wire.Rule { r := ok; f(&r); return r }
	for _, tc := range []struct {
		name string
		r    wire.Rule
		caps wire.Caps
		msg  string // "" = accepted
	}{
		{"accepted", ok, capsAll, ""},
		{"last name byte not NUL", mod(func(r *wire.Rule) { r.IfName[15] = 'x' }), capsAll, "rule refused by the forwarder: interface name is not NUL-terminated"},
		{"scan flag and lo, as pasta's own", splice()[0], capsAll, ""},
		{"target same family", withTarget(ok, "10.0.0.2"), capsAll, ""},
		{"inverted", mod(func(r *wire.Rule) { r.First, r.Last = 20, 10 }), capsAll, "rule refused by the forwarder: port range 20-10 is inverted"},
		{"from port 0", mod(func(r *wire.Rule) { r.First = 0 }), capsAll, "rule refused by the forwarder: it forwards from port 0"},
		{"to port 0", mod(func(r *wire.Rule) { r.To = 0 }), capsAll, "rule refused by the forwarder: it forwards to port 0"},
		{"past 65535", mod(func(r *wire.Rule) { r.To = 65530 }), capsAll, "rule refused by the forwarder: target ports 65530-65540 pass 65535"},
		{"up to 65535", mod(func(r *wire.Rule) { r.To = 65525 }), capsAll, ""},
		{"unknown flag", mod(func(r *wire.Rule) { r.Flags = 0x09 }), capsAll, "rule refused by the forwarder: unknown flags 0x8"},
		{"dual not on ::", mod(func(r *wire.Rule) { r.Flags = wire.FlagDualStack }), capsAll, "rule refused by the forwarder: dual-stack rule listens on 127.0.0.1, not on ::"},
		{"dual without IPv4", rule(wire.ProtoTCP, "", 1, 1, 1, wire.FlagDualStack), capsV6, "capability missing: dual-stack rule, but the table has no IPv4 (caps IPv6|TCP|UDP)"},
		{"IPv4 without IPv4", ok, capsV6, "capability missing: IPv4 listening address, but the table has no IPv4 (caps IPv6|TCP|UDP)"},
		{"IPv6 without IPv6", rule(wire.ProtoTCP, "", 1, 1, 1, 0), capsV4, "capability missing: IPv6 listening address, but the table has no IPv6 (caps IPv4|TCP|UDP)"},
		{"SCTP", mod(func(r *wire.Rule) { r.Proto = 132 }), capsAll, "rule refused by the forwarder: protocol 132: the forwarder forwards TCP and UDP only"},
		{"multicast target", withTarget(ok, "239.1.1.1"), capsAll, "rule refused by the forwarder: multicast or broadcast target address 239.1.1.1"},
		{"broadcast target", withTarget(ok, "255.255.255.255"), capsAll, "rule refused by the forwarder: multicast or broadcast target address 255.255.255.255"},
		{"dual with target", withTarget(rule(wire.ProtoTCP, "", 1, 1, 1, wire.FlagDualStack), "fd00::1"), capsAll, "rule refused by the forwarder: dual-stack rule with target address fd00::1"},
		{"family mismatch", withTarget(ok, "fd00::1"), capsAll, "address families differ: from IPv4 127.0.0.1 to IPv6 fd00::1"},
		{"v4 unspecified target is no target", withTarget(rule(wire.ProtoTCP, "::1", 1, 1, 1, 0), "0.0.0.0"), capsAll, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRule(tc.r, tc.caps)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.msg {
				t.Errorf("got %q, want %q", got, tc.msg)
			}
		})
	}
}

func TestConflicts(t *testing.T) {
	r := func(a string, flags wire.Flags) wire.Rule { return rule(wire.ProtoTCP, a, 100, 200, 100, flags) }
	for _, tc := range []struct {
		a, b wire.Rule
		want bool
	}{
		{r("", wire.FlagDualStack), r("127.0.0.1", 0), true},
		{r("", wire.FlagDualStack), r("::1", 0), true},
		{r("", 0), r("::1", 0), true},
		{r("", 0), r("127.0.0.1", 0), false},
		{r("0.0.0.0", 0), r("127.0.0.1", 0), true},
		{r("0.0.0.0", 0), r("::", 0), false},
		{r("127.0.0.1", 0), r("127.0.0.2", 0), false},
		{r("127.0.0.1", 0), r("127.0.0.1", 0), true}, // exact duplicate
		{r("127.0.0.1", 0), rule(wire.ProtoTCP, "127.0.0.1", 201, 300, 1, 0), false},
		{r("127.0.0.1", 0), rule(wire.ProtoTCP, "127.0.0.1", 200, 300, 1, 0), true},
		{r("127.0.0.1", 0), rule(wire.ProtoTCP, "127.0.0.1", 1, 100, 1, 0), true},
		{r("127.0.0.1", 0), rule(wire.ProtoUDP, "127.0.0.1", 100, 200, 100, 0), false},
	} {
		if got := conflicts(tc.a, tc.b); got != tc.want {
			t.Errorf("conflicts(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := conflicts(tc.b, tc.a); got != tc.want {
			t.Errorf("conflicts(%s, %s) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestAttribute(t *testing.T) {
	ms := []PortMapping{tcp(8081, 81), at("127.0.0.1", tcp(9000, 90)), tcp(8080, 80), at("127.0.0.1", tcp(9001, 91))}
	c, err := Compile(ms, Options{}, capsAll)
	if err != nil {
		t.Fatal(err)
	}
	foreign := rule(wire.ProtoTCP, "", 9001, 9001, 1, wire.FlagDualStack)
	_, err = Plan(host(foreign), nil, c.Rules)
	err = c.Attribute(err)
	want := "pif HOST: conflict: rule TCP [127.0.0.1]:9000-9001  =>  90-91  overlaps a rule already in the table, TCP [*]:9001  =>  1  (rule made from portMappings entries 1, 3)"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if c.Attribute(nil) != nil {
		t.Fatal("Attribute(nil) is not nil")
	}
}
