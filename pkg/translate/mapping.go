package translate

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// entry is one port mapping after parsing: what it asks of the forwarder.
type entry struct {
	listen [16]byte // wire form
	idx    int      // place in the mappings list
	host   uint16
	cont   uint16
	proto  wire.Proto
	flags  wire.Flags // FlagDualStack only; the options' flags are common
}

// options are Options after checking, shared by every entry.
type options struct {
	flags   wire.Flags
	target  [16]byte // wire form; zero = none
	tfam    int      // 0 none, 4 or 6
	target6 [16]byte // with an IPv4 target: the IPv6 rules' target
	both    bool     // a target of each family (target6 set)
	ifname  [wire.IfNameSize]byte
}

func parseOptions(opts Options) (options, error) {
	var o options
	if opts.Weak {
		o.flags |= wire.FlagWeak
	}
	if name := opts.Interface; name != "" {
		if err := CheckInterface(name); err != nil {
			return o, &MappingError{Index: -1, Err: fmt.Errorf("%w: %w", ErrInterface, err)}
		}
		copy(o.ifname[:], name)
	}
	if t := opts.Target; t.IsValid() {
		if err := CheckTarget(t); err != nil {
			return o, &MappingError{Index: -1, Err: fmt.Errorf("%w: %w", ErrAddress, err)}
		}
		a := addr16(t)
		o.target = a
		o.tfam = 6
		if isV4(a) {
			o.tfam = 4
		}
	}
	if t := opts.Target6; t.IsValid() {
		if err := CheckTarget(t); err != nil {
			return o, &MappingError{Index: -1, Err: fmt.Errorf("%w: %w", ErrAddress, err)}
		}
		a := addr16(t)
		if isV4(a) || o.tfam != 4 {
			return o, &MappingError{Index: -1, Err: fmt.Errorf("%w: IPv6 target %s needs an IPv6 address and an IPv4 target beside it", ErrAddress, t)}
		}
		o.target6, o.both = a, true
	}
	return o, nil
}

// targetFor returns the target of a rule listening on listen.
func (o *options) targetFor(listen [16]byte) [16]byte {
	if o.both && !isV4(listen) {
		return o.target6
	}
	return o.target
}

// CheckInterface reports a name that cannot be a listener's interface:
// too long for the rule, or what Linux refuses as a device name
// (dev_valid_name; the forwarder only checks the NUL and would fail
// later, at bind). Front ends check their option with it, to name it.
func CheckInterface(name string) error {
	var r wire.Rule
	if err := r.SetInterface(name); err != nil {
		return err
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\v\f\r") {
		return fmt.Errorf("interface name %q is not a valid Linux device name", name)
	}
	return nil
}

// CheckTarget reports a target address the forwarder cannot forward to:
// with a zone, unspecified, multicast or broadcast.
func CheckTarget(t netip.Addr) error {
	a := addr16(t)
	why := ""
	switch {
	case t.Zone() != "":
		why = "a zone cannot be given to the forwarder"
	case isUnspecified(a):
		why = "unspecified; leave the target out to use the container's default address"
	case isMulticast(a):
		why = "multicast or broadcast; the forwarder needs a unicast target"
	default:
		return nil
	}
	return fmt.Errorf("target address %s: %s", t, why)
}

// ParseProtocol maps a protocol name ("tcp" or "udp", in any case) to
// the wire's. An empty one is TCP, as Kubernetes and Podman default it.
func ParseProtocol(s string) (wire.Proto, error) {
	switch strings.ToLower(s) {
	case "tcp", "":
		return wire.ProtoTCP, nil
	case "udp":
		return wire.ProtoUDP, nil
	}
	return 0, fmt.Errorf("%w %q: the forwarder forwards TCP and UDP only", ErrProtocol, s)
}

// CheckPort reports a port number outside 1..65535.
func CheckPort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%w: %d is not in 1..65535", ErrPort, p)
	}
	return nil
}

// ParseHostIP reads a listening address: an IP address without a zone
// (the listeners' interface is an option of its own) that a listener can
// bind, so not multicast or broadcast.
func ParseHostIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("%w: %q is not an IP address", ErrAddress, s)
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%w: %q has a zone; bind the listeners to an interface with bindInterface instead", ErrAddress, s)
	case isMulticast(addr16(a)):
		return netip.Addr{}, fmt.Errorf("%w: %q is a multicast or broadcast address, which a listener cannot bind", ErrAddress, s)
	}
	return a, nil
}

var (
	any4 = addr16(netip.IPv4Unspecified())
	any6 = [16]byte{}
)

// parseEntries appends the entries of mapping i to es, checked against
// caps: one, or with a target of each family and hostIP "", one of each
// family.
func parseEntries(es []entry, i int, m PortMapping, o *options, caps wire.Caps) ([]entry, error) {
	e, err := parseEntry(i, m, o, caps)
	if err != nil {
		return es, err
	}
	es = append(es, e)
	if o.both && m.HostIP == "" {
		e.listen = any6
		r := o.rule(e)
		if err := checkRule(r, caps); err != nil {
			return es, &TableError{Pif: wire.PifHost, Rule: r, Entries: []int{i}, Err: fmt.Errorf("rule %s: %w", r, err)}
		}
		es = append(es, e)
	}
	return es, nil
}

// parseEntry turns mapping i into an entry, checked against caps; with a
// target of each family, hostIP "" gives its IPv4 entry.
func parseEntry(i int, m PortMapping, o *options, caps wire.Caps) (entry, error) {
	e := entry{idx: i}
	fail := func(err error) (entry, error) { return entry{}, &MappingError{Index: i, Mapping: m, Err: err} }
	var err error
	if e.proto, err = ParseProtocol(m.Protocol); err != nil {
		return fail(err)
	}
	if err := CheckPort(m.HostPort); err != nil {
		return fail(fmt.Errorf("hostPort: %w", err))
	}
	if err := CheckPort(m.ContainerPort); err != nil {
		return fail(fmt.Errorf("containerPort: %w", err))
	}
	e.host, e.cont = uint16(m.HostPort), uint16(m.ContainerPort)
	switch m.HostIP {
	case "":
		switch {
		case o.tfam == 4:
			e.listen = any4 // a target: its family only (see Rules)
		case o.tfam == 6:
			e.listen = any6
		case caps.Has(wire.CapIPv4 | wire.CapIPv6):
			e.listen, e.flags = any6, wire.FlagDualStack
		case caps.Has(wire.CapIPv4):
			e.listen = any4
		case caps.Has(wire.CapIPv6):
			e.listen = any6
		default:
			r := o.rule(e)
			r.Flags |= wire.FlagDualStack
			return entry{}, &TableError{Pif: wire.PifHost, Rule: r, Entries: []int{i}, Err: fmt.Errorf(
				"%w: hostIP \"\" listens on every address, but the table has neither IPv4 nor IPv6 (caps %s)", ErrCapability, caps)}
		}
	default:
		a, perr := ParseHostIP(m.HostIP)
		if perr != nil {
			return fail(fmt.Errorf("hostIP: %w", perr))
		}
		e.listen = addr16(a)
	}
	if o.tfam != 0 && !o.both && isV4(e.listen) != (o.tfam == 4) {
		return fail(fmt.Errorf("%w: the listening address %s is %s but the target address %s is %s; the forwarder does not translate between families",
			ErrFamily, netip.AddrFrom16(e.listen).Unmap(), family(e.listen), netip.AddrFrom16(o.target).Unmap(), family(o.target)))
	}
	r := o.rule(e)
	if err := checkRule(r, caps); err != nil {
		return entry{}, &TableError{Pif: wire.PifHost, Rule: r, Entries: []int{i}, Err: fmt.Errorf("rule %s: %w", r, err)}
	}
	if o.ifname[0] != 0 && !caps.Has(wire.CapIfName) {
		return entry{}, &TableError{Pif: wire.PifHost, Rule: r, Entries: []int{i}, Err: fmt.Errorf(
			"%w: the interface option needs binding to an interface, which the table cannot do (caps %s)", ErrCapability, caps)}
	}
	return e, nil
}

// rule builds the single-port rule of e, canonical (16-byte addresses).
func (o *options) rule(e entry) wire.Rule {
	return o.rangeRule(e, e.host, e.cont)
}

func (o *options) rangeRule(e entry, last, to uint16) wire.Rule {
	r := wire.NewRule(e.proto, netip.AddrFrom16(e.listen), e.host, last, to, e.flags|o.flags)
	r.Target = netip.AddrFrom16(o.targetFor(e.listen))
	r.IfName = o.ifname
	return r
}
