package translate

import (
	"fmt"
	"net/netip"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// The checks in this file are those the forwarder applies to each rule it
// receives (passt's fwd_rule_add and the control socket reader), in the
// same order, so that a rule accepted here is accepted there.

// addr16 is a rule address in its 16-byte wire form.
func addr16(a netip.Addr) [16]byte { return wire.To16(a).As16() }

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// isV4 reports whether a 16-byte address is v4-mapped (the forwarder's
// notion of an IPv4 address).
func isV4(a [16]byte) bool { return [12]byte(a[:12]) == v4Prefix }

// isUnspecified reports whether a is "::" or the v4-mapped 0.0.0.0.
func isUnspecified(a [16]byte) bool {
	return a == [16]byte{} || (isV4(a) && [4]byte(a[12:]) == [4]byte{})
}

// isMulticast reports IPv6 multicast, IPv4 multicast or the IPv4 broadcast
// address, as the forwarder does for a target address.
func isMulticast(a [16]byte) bool {
	if a[0] == 0xff {
		return true
	}
	return isV4(a) && (a[12]&0xf0 == 0xe0 || [4]byte(a[12:]) == [4]byte{255, 255, 255, 255})
}

func family(a [16]byte) string {
	if isV4(a) {
		return "IPv4"
	}
	return "IPv6"
}

// checkRule reports why the forwarder would refuse r in a table with caps,
// looking at r alone (not at the other rules of the table).
func checkRule(r wire.Rule, caps wire.Caps) error {
	listen, target := addr16(r.Listen), addr16(r.Target)
	dual := r.Flags&wire.FlagDualStack != 0
	switch {
	case r.IfName[wire.IfNameSize-1] != 0:
		return fmt.Errorf("%w: interface name is not NUL-terminated", ErrInvalid)
	case r.First > r.Last:
		return fmt.Errorf("%w: port range %d-%d is inverted", ErrInvalid, r.First, r.Last)
	case r.First == 0:
		return fmt.Errorf("%w: it forwards from port 0", ErrInvalid)
	case r.To == 0:
		return fmt.Errorf("%w: it forwards to port 0", ErrInvalid)
	case int(r.To)+int(r.Last-r.First) > 65535:
		return fmt.Errorf("%w: target ports %d-%d pass 65535", ErrInvalid, r.To, int(r.To)+int(r.Last-r.First))
	case r.Flags&^wire.KnownFlags != 0:
		return fmt.Errorf("%w: unknown flags %#x", ErrInvalid, uint8(r.Flags&^wire.KnownFlags))
	}
	if dual {
		switch {
		case listen != [16]byte{}:
			return fmt.Errorf("%w: dual-stack rule listens on %s, not on ::", ErrInvalid, r.ListenAddr())
		case !caps.Has(wire.CapIPv4):
			return fmt.Errorf("%w: dual-stack rule, but the table has no IPv4 (caps %s)", ErrCapability, caps)
		case !caps.Has(wire.CapIPv6):
			return fmt.Errorf("%w: dual-stack rule, but the table has no IPv6 (caps %s)", ErrCapability, caps)
		}
	} else if isV4(listen) && !caps.Has(wire.CapIPv4) {
		return fmt.Errorf("%w: IPv4 listening address, but the table has no IPv4 (caps %s)", ErrCapability, caps)
	} else if !isV4(listen) && !caps.Has(wire.CapIPv6) {
		return fmt.Errorf("%w: IPv6 listening address, but the table has no IPv6 (caps %s)", ErrCapability, caps)
	}
	switch r.Proto {
	case wire.ProtoTCP:
		if !caps.Has(wire.CapTCP) {
			return fmt.Errorf("%w: TCP rule, but the table has no TCP (caps %s)", ErrCapability, caps)
		}
	case wire.ProtoUDP:
		if !caps.Has(wire.CapUDP) {
			return fmt.Errorf("%w: UDP rule, but the table has no UDP (caps %s)", ErrCapability, caps)
		}
	default:
		return fmt.Errorf("%w: protocol %d: the forwarder forwards TCP and UDP only", ErrInvalid, uint8(r.Proto))
	}
	if !isUnspecified(target) {
		switch {
		case isMulticast(target):
			return fmt.Errorf("%w: multicast or broadcast target address %s", ErrInvalid, r.TargetAddr())
		case dual:
			return fmt.Errorf("%w: dual-stack rule with target address %s", ErrInvalid, r.TargetAddr())
		case isV4(listen) != isV4(target):
			return fmt.Errorf("%w: from %s %s to %s %s", ErrFamily, family(listen), r.ListenAddr(), family(target), r.TargetAddr())
		}
	}
	return nil
}

// span is what the conflict check needs of a rule, computed once.
type span struct {
	listen      [16]byte
	first, last uint16
	proto       wire.Proto
	all         bool // dual-stack: matches every address
	unspec, v4  bool
}

func spanOf(r wire.Rule) span {
	l := addr16(r.Listen)
	return span{listen: l, first: r.First, last: r.Last, proto: r.Proto,
		all: r.Flags&wire.FlagDualStack != 0, unspec: isUnspecified(l), v4: isV4(l)}
}

// overlaps reports whether the forwarder refuses a and b in one table:
// same protocol, overlapping addresses (a dual-stack rule matches every
// address, an unspecified address every address of its family, any other
// address itself) and overlapping port ranges. The interface name does
// not matter; an exact duplicate conflicts too.
func (a *span) overlaps(b *span) bool {
	if a.proto != b.proto || a.first > b.last || b.first > a.last {
		return false
	}
	switch {
	case a.all || b.all:
		return true
	case a.unspec || b.unspec:
		return a.v4 == b.v4
	}
	return a.listen == b.listen
}

// conflicts reports whether the forwarder refuses rules a and b in one
// table (see span.overlaps).
func conflicts(a, b wire.Rule) bool {
	sa, sb := spanOf(a), spanOf(b)
	return sa.overlaps(&sb)
}
