package translate

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// FuzzRules feeds arbitrary protocol, hostIP, port, option and capability
// values through Rules and Plan. Whatever comes in: no panic, only the two
// error types, and every result is a set of valid, compatible rules that
// does not depend on input order and that Plan takes into an empty table.
func FuzzRules(f *testing.F) {
	f.Add("tcp", "", 8080, 80, uint8(0), "", "", false, uint8(0x3f))
	f.Add("UDP", "127.0.0.1", 53, 53, uint8(3), "", "", true, uint8(0x0f))
	f.Add("sctp", "::1", 1, 65535, uint8(1), "fd00::2", "eth0", false, uint8(0x3f))
	f.Add("tcp", "0.0.0.0", 65535, 1, uint8(200), "10.0.0.2", "", false, uint8(0x05))
	f.Add("tcp", "::", 0, 0, uint8(2), "224.0.0.1", "a-very-long-ifname", false, uint8(0x3a))
	f.Add("Tcp", "fe80::1%eth0", -1, 70000, uint8(9), "::ffff:1.2.3.4", "lo", true, uint8(0x2d))
	f.Fuzz(func(t *testing.T, proto, hostIP string, hp, cp int, count uint8, target, iface string, weak bool, capbits uint8) {
		caps := wire.Caps(capbits) & (wire.CapIPv4 | wire.CapIPv6 | wire.CapTCP | wire.CapUDP | wire.CapScan | wire.CapIfName)
		opts := Options{Weak: weak, Interface: iface}
		if a, err := netip.ParseAddr(target); err == nil {
			opts.Target = a
		}
		ms := []PortMapping{{HostPort: hp, ContainerPort: cp, Protocol: proto, HostIP: hostIP}}
		for i := range int(count) {
			m := ms[0]
			m.HostPort += i / 2
			m.ContainerPort += i / 2 * (i % 3)
			if i%5 == 4 {
				m.Protocol = "udp"
			}
			if i%7 == 6 {
				m.HostIP = ""
			}
			ms = append(ms, m)
		}
		rs, err := Rules(ms, opts, caps)
		if err != nil {
			var me *MappingError
			var te *TableError
			if !errors.As(err, &me) && !errors.As(err, &te) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if me != nil && (me.Index < -1 || me.Index >= len(ms)) {
				t.Fatalf("index %d out of %d entries", me.Index, len(ms))
			}
			return
		}
		for i, r := range rs {
			if err := checkRule(r, caps); err != nil {
				t.Fatalf("rule %s refused: %v", r, err)
			}
			for _, o := range rs[:i] {
				if conflicts(o, r) {
					t.Fatalf("rules %s and %s conflict", o, r)
				}
			}
		}
		n := 0
		for _, r := range rs {
			n += r.Ports()
		}
		if n > len(ms) {
			t.Fatalf("%d ports from %d entries", n, len(ms))
		}
		slices.Reverse(ms)
		rs2, err := Rules(ms, opts, caps)
		if err != nil || !slices.EqualFunc(rs, rs2, wire.Rule.Equal) {
			t.Fatalf("reversed input: %v\n%q\n%q", err, strs(rs), strs(rs2))
		}
		tab := wire.NewTable(1, wire.PifHost, caps)
		e, err := Plan(tab, nil, rs)
		if err != nil {
			t.Fatalf("Plan into an empty table: %v", err)
		}
		if got := tab.Apply(e); !slices.EqualFunc(got.Rules, rs, wire.Rule.Equal) {
			t.Fatalf("empty table plus rules: %q", strs(got.Rules))
		}
	})
}
