package ctltest

import (
	"fmt"
	"net/netip"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// addRule validates r against the pending table t the way the real
// forwarder does when it reads a client's rule (conf.c, fwd_rule.c), and
// appends it when valid. The checks and their order follow the forwarder:
// interface name termination, port range, target port, flags, addresses
// against capabilities, protocol, target address, conflicts, limits.
func addRule(t *wire.Table, r wire.Rule) error {
	if _, ok := r.Interface(); !ok {
		return fmt.Errorf("interface name was not NUL-terminated")
	}
	if r.First > r.Last {
		return fmt.Errorf("rule has invalid port range %d-%d", r.First, r.Last)
	}
	if r.First == 0 {
		return fmt.Errorf("forwarding rule attempts to map from port 0")
	}
	if r.To == 0 || uint32(r.To)+uint32(r.Last-r.First) > 0xffff {
		return fmt.Errorf("forwarding rule attempts to map to port 0")
	}
	if extra := r.Flags &^ wire.KnownFlags; extra != 0 {
		return fmt.Errorf("rule has invalid flags %#x", uint8(extra))
	}
	listen := wire.To16(r.Listen)
	if r.Flags.Has(wire.FlagDualStack) {
		if listen != netip.IPv6Unspecified() {
			return fmt.Errorf("dual stack rule has non-wildcard address %s", r.ListenAddr())
		}
		if !t.Caps.Has(wire.CapIPv4) || !t.Caps.Has(wire.CapIPv6) {
			return fmt.Errorf("dual stack forward, but IPv4 or IPv6 not enabled")
		}
	} else {
		if listen.Is4In6() && !t.Caps.Has(wire.CapIPv4) {
			return fmt.Errorf("IPv4 forward, but IPv4 not enabled")
		}
		if !listen.Is4In6() && !t.Caps.Has(wire.CapIPv6) {
			return fmt.Errorf("IPv6 forward, but IPv6 not enabled")
		}
	}
	switch r.Proto {
	case wire.ProtoTCP:
		if !t.Caps.Has(wire.CapTCP) {
			return fmt.Errorf("can't add TCP forwarding rule, TCP not enabled")
		}
	case wire.ProtoUDP:
		if !t.Caps.Has(wire.CapUDP) {
			return fmt.Errorf("can't add UDP forwarding rule, UDP not enabled")
		}
	default:
		return fmt.Errorf("unsupported protocol %#x for forwarding rule", uint8(r.Proto))
	}
	if r.HasTarget() {
		target := wire.To16(r.Target)
		switch {
		case isMulticast(target):
			return fmt.Errorf("multicast target address %s for forwarding rule", r.TargetAddr())
		case r.Flags.Has(wire.FlagDualStack):
			return fmt.Errorf("dual stack forward to address %s unsupported", r.TargetAddr())
		case listen.Is4In6() != target.Is4In6():
			return fmt.Errorf("forward from %s to %s unsupported (address families differ)", r.ListenAddr(), r.TargetAddr())
		}
	}
	ports := 0
	for _, o := range t.Rules {
		if conflicts(r, o) {
			return fmt.Errorf("forwarding configuration conflict: %s versus %s", r, o)
		}
		ports += o.Ports()
	}
	if len(t.Rules) >= wire.MaxRules {
		return fmt.Errorf("too many rules (maximum %d)", wire.MaxRules)
	}
	if ports+r.Ports() > wire.MaxListenPorts {
		return fmt.Errorf("rules require too many listening sockets (maximum %d)", wire.MaxListenPorts)
	}
	t.Rules = append(t.Rules, r)
	return nil
}

// conflicts reports whether two rules of one table would compete for a
// listening socket: same protocol, matching addresses, overlapping ports.
func conflicts(a, b wire.Rule) bool {
	if a.Proto != b.Proto {
		return false
	}
	if a.Last < b.First || b.Last < a.First {
		return false
	}
	// A dual-stack rule matches every address.
	if a.Flags.Has(wire.FlagDualStack) || b.Flags.Has(wire.FlagDualStack) {
		return true
	}
	la, lb := wire.To16(a.Listen), wire.To16(b.Listen)
	if isUnspecified(la) || isUnspecified(lb) {
		return la.Is4In6() == lb.Is4In6()
	}
	return la == lb
}

// isUnspecified: "::" or the v4-mapped 0.0.0.0.
func isUnspecified(a netip.Addr) bool {
	return a.IsUnspecified() || (a.Is4In6() && a.Unmap().IsUnspecified())
}

// isMulticast: IPv6 multicast, or v4-mapped IPv4 multicast or broadcast.
func isMulticast(a netip.Addr) bool {
	if a.Is4In6() {
		v4 := a.Unmap()
		return v4.IsMulticast() || v4 == netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return a.IsMulticast()
}
