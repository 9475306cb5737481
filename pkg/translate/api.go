// Package translate turns a container's CNI port mappings into forwarder
// rules and decides how a live table changes: compaction, local
// validation with the forwarder's own checks, and ownership of rules.
//
// The flow inside one transaction with the live tables is:
//
//	host := live.Lookup(wire.PifHost)
//	desired, err := translate.Rules(mappings, opts, host.Caps) // *MappingError or *TableError
//	edit, err := translate.Plan(*host, owned, desired)         // *TableError
//	next := host.Apply(edit)
//
// Rules is deterministic: the same mappings (in any order) and options give
// the same rules, byte for byte, so a repeated ADD asks for exactly what is
// already there. Plan never touches a rule the container does not own, and
// keeps a desired rule already present byte for byte: whether the caller
// may take such a rule over is the ownership policy's decision, made
// before Plan (pkg/attach refuses one it does not claim).
package translate

import (
	"net/netip"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// PortMapping is one CNI port mapping (runtimeConfig.portMappings).
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Options are the plugin options that apply to every mapping.
type Options struct {
	Weak bool // bind failures tolerated (wire.FlagWeak)
	// Target is the container-side target address; the invalid Addr means
	// the container's default address. With a target, an entry with
	// hostIP "" listens on the target family's "any" address only (see
	// Rules).
	Target netip.Addr
	// Target6, with an IPv4 Target, is the target of the IPv6 rules: each
	// family forwards to its own address (a container reached through an
	// interface that has one address of each family), and an entry with
	// hostIP "" makes one rule of each family (0.0.0.0 to Target, "::" to
	// Target6). It must be an IPv6 address.
	Target6   netip.Addr
	Interface string // interface to bind the listener on; "" = any
}

// Rules translates and compacts mappings into rules for the inbound (HOST)
// table with the given capabilities. The rules come out sorted, by
// protocol, listening address, flags and first port, whatever the order of
// the mappings.
//
// An entry maps as follows. Protocol "tcp" or "udp", in any case. HostIP
// "" listens on every address: one dual-stack rule (listen "::" with
// wire.FlagDualStack) when caps hold IPv4 and IPv6, otherwise the "any"
// address of the one family caps hold; "0.0.0.0" is IPv4 "any" only, "::"
// IPv6 "any" only; any other address listens on that address (IPv4 as
// v4-mapped). Ports must be 1..65535 on both sides. Options.Weak sets
// wire.FlagWeak, Options.Interface binds the listener (it needs
// wire.CapIfName).
//
// A target address (Options.Target) must be of the listening address's
// family, since the forwarder cannot translate between families and
// refuses a dual-stack rule with a target. An entry with hostIP "" and a
// target therefore listens on the "any" address of the target's family
// only (0.0.0.0 for an IPv4 target, "::" for an IPv6 one), not on both;
// with a target of each family (Options.Target6) it makes a rule for each.
//
// Errors are *MappingError (bad input: CNI code 7) or *TableError (the
// table cannot take it: safe fail, code 100). To know which entries made
// each rule, use Compile.
func Rules(mappings []PortMapping, opts Options, caps wire.Caps) ([]wire.Rule, error) {
	c, err := Compile(mappings, opts, caps)
	if err != nil {
		return nil, err
	}
	return c.Rules, nil
}

// Plan computes the edit of table t that takes the container from owning
// the rules in owned to owning those in desired: owned rules no longer
// desired are removed (absent ones are fine), desired rules are added
// (already present byte for byte: kept as the caller's, not a conflict;
// the caller refuses beforehand a rule it may not take over), everything
// else untouched. It validates the resulting table with the forwarder's checks
// and returns a *TableError naming the rule and the reason when the
// forwarder would reject it.
//
// The edit is exactly: Remove = owned rules not in desired, Add = desired,
// each without repeats and in the order given. t.Apply(edit) is the table
// that was validated.
func Plan(t wire.Table, owned, desired []wire.Rule) (wire.Edit, error) {
	return plan(t, owned, desired)
}
