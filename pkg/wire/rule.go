package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// RuleSize is the size of one encoded rule.
const RuleSize = 56

// Proto is the IP protocol of a rule.
type Proto uint8

// Protocols the forwarder knows.
const (
	ProtoTCP Proto = 6
	ProtoUDP Proto = 17
)

// String gives "TCP", "UDP" or "proto N".
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	}
	return fmt.Sprintf("proto %d", uint8(p))
}

// Flags are the per-rule flag bits.
type Flags uint8

// Rule flags of version 2.
const (
	// FlagDualStack: listen on both IPv4 and IPv6 "any"; the listen address must be "::".
	FlagDualStack Flags = 0x01
	// FlagWeak: bind failures are logged, not errors (unless no port binds).
	FlagWeak Flags = 0x02
	// FlagScan: forward only ports that are bound on the target side ("auto").
	FlagScan Flags = 0x04

	// KnownFlags is every flag bit version 2 defines.
	KnownFlags = FlagDualStack | FlagWeak | FlagScan
)

// Has reports whether all bits of f2 are set in f.
func (f Flags) Has(f2 Flags) bool { return f&f2 == f2 }

// Rule is one forwarding rule. Its zero value is not a valid rule.
//
// Addresses are kept in their 16-byte form, exactly as on the wire: an IPv4
// address is the v4-mapped ::ffff:a.b.c.d, and the all-zero address is "::".
// Use NewRule or the Set methods, which normalise, rather than filling Listen
// and Target with 4-byte addresses by hand; Equal and Key compare encodings,
// so they are right either way.
type Rule struct {
	Listen netip.Addr // listening address; "::" is any
	Target netip.Addr // guest-side target address; "::" is unspecified
	// IfName is the interface to bind the listener to, NUL-terminated and
	// NUL-padded. The raw bytes are kept so padding survives a round trip.
	IfName [IfNameSize]byte
	First  uint16 // first listening port
	Last   uint16 // last listening port
	To     uint16 // target port of First; port p goes to To + (p - First)
	Proto  Proto
	Flags  Flags
}

// To16 returns a in its 16-byte form (IPv4 as v4-mapped); an invalid
// (zero) Addr becomes "::".
func To16(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return netip.IPv6Unspecified()
	}
	return netip.AddrFrom16(a.As16())
}

// NewRule builds a rule with listen address listen (invalid or "::" for any).
func NewRule(proto Proto, listen netip.Addr, first, last, to uint16, flags Flags) Rule {
	return Rule{Listen: To16(listen), Target: netip.IPv6Unspecified(), First: first, Last: last, To: to, Proto: proto, Flags: flags}
}

// Append appends the 56-byte encoding of r to b.
func (r Rule) Append(b []byte) []byte {
	l := To16(r.Listen).As16()
	t := To16(r.Target).As16()
	b = append(b, l[:]...)
	b = append(b, t[:]...)
	b = append(b, r.IfName[:]...)
	b = binary.BigEndian.AppendUint16(b, r.First)
	b = binary.BigEndian.AppendUint16(b, r.Last)
	b = binary.BigEndian.AppendUint16(b, r.To)
	return append(b, byte(r.Proto), byte(r.Flags))
}

// Key is the exact encoding of r: two rules are the same rule when their
// keys are equal. It is comparable and can key a map.
func (r Rule) Key() [RuleSize]byte {
	var k [RuleSize]byte
	r.Append(k[:0])
	return k
}

// Equal reports whether r and o encode to the same bytes.
func (r Rule) Equal(o Rule) bool { return r.Key() == o.Key() }

// ParseRule decodes one rule from exactly RuleSize bytes.
func ParseRule(b []byte) (Rule, error) {
	if len(b) != RuleSize {
		return Rule{}, fmt.Errorf("rule is %d bytes, want %d", len(b), RuleSize)
	}
	var r Rule
	r.Listen = netip.AddrFrom16([16]byte(b[0:16]))
	r.Target = netip.AddrFrom16([16]byte(b[16:32]))
	copy(r.IfName[:], b[32:48])
	r.First = binary.BigEndian.Uint16(b[48:])
	r.Last = binary.BigEndian.Uint16(b[50:])
	r.To = binary.BigEndian.Uint16(b[52:])
	r.Proto = Proto(b[54])
	r.Flags = Flags(b[55])
	return r, nil
}

// Interface returns the interface name up to its first NUL, and whether
// the name is NUL-terminated within its field (the forwarder refuses it
// otherwise).
func (r Rule) Interface() (string, bool) {
	i := strings.IndexByte(string(r.IfName[:]), 0)
	if i < 0 {
		return string(r.IfName[:]), false
	}
	return string(r.IfName[:i]), true
}

// SetInterface sets the interface name; it must be shorter than IfNameSize.
func (r *Rule) SetInterface(name string) error {
	if len(name) >= IfNameSize || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("interface name %q: longer than %d bytes or holds a NUL", name, IfNameSize-1)
	}
	r.IfName = [IfNameSize]byte{}
	copy(r.IfName[:], name)
	return nil
}

// HasTarget reports whether the rule names a target address.
func (r Rule) HasTarget() bool { return !To16(r.Target).IsUnspecified() }

// ListenAny reports whether the rule listens on the unspecified address.
func (r Rule) ListenAny() bool { return To16(r.Listen).IsUnspecified() }

// Ports returns the number of ports in the rule's range (0 if First > Last).
func (r Rule) Ports() int {
	if r.First > r.Last {
		return 0
	}
	return int(r.Last) - int(r.First) + 1
}

// ListenAddr is the listening address in its natural form: IPv4 for a
// v4-mapped address, "::" for any.
func (r Rule) ListenAddr() netip.Addr { return To16(r.Listen).Unmap() }

// TargetAddr is the target address in its natural form, or the invalid Addr
// when the rule has none.
func (r Rule) TargetAddr() netip.Addr {
	if !r.HasTarget() {
		return netip.Addr{}
	}
	return To16(r.Target).Unmap()
}

// String renders the rule exactly as pesto and pasta print it, e.g.
// "TCP [*]:8080  =>  80 " or "UDP [127.0.0.1]%lo:1-10  =>  101-110  (best effort)".
// Note the space after the target port, which pesto prints too.
func (r Rule) String() string {
	addr := "*"
	if !r.Flags.Has(FlagDualStack) {
		addr = r.ListenAddr().String()
	}
	var sb strings.Builder
	name, _ := r.Interface()
	if name != "" {
		name = "%" + name
	}
	fmt.Fprintf(&sb, "%s [%s]%s:%s  =>  ", r.Proto, addr, name, portRange(r.First, r.Last))
	if r.HasTarget() {
		sb.WriteString(r.TargetAddr().String() + ":")
	}
	if r.First == r.Last {
		fmt.Fprintf(&sb, "%d ", r.To)
	} else {
		fmt.Fprintf(&sb, "%d-%d ", r.To, uint16(r.Last-r.First+r.To))
	}
	if r.Flags.Has(FlagWeak) {
		sb.WriteString(" (best effort)")
	}
	if r.Flags.Has(FlagScan) {
		sb.WriteString(" (auto-scan)")
	}
	if extra := r.Flags &^ KnownFlags; extra != 0 {
		fmt.Fprintf(&sb, " (flags %#02x)", uint8(extra))
	}
	return sb.String()
}

func portRange(a, b uint16) string {
	if a == b {
		return fmt.Sprint(a)
	}
	return fmt.Sprintf("%d-%d", a, b)
}
