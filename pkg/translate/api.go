// Package translate turns a container's CNI port mappings into forwarder
// rules and decides how a live table changes: compaction, local
// validation with the forwarder's own checks, and ownership of rules.
//
// API CONTRACT (stub written by the lead so that other packages can be built
// in parallel; the owner of this package replaces the bodies, keeps the
// exported names and may add to them).
package translate

import (
	"errors"
	"net/netip"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
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
	Weak      bool       // bind failures tolerated (wire.FlagWeak)
	Target    netip.Addr // container-side target address; invalid = unspecified
	Interface string     // interface to bind the listener on; "" = any
}

// Rules translates and compacts mappings into rules for a table with the
// given capabilities. Errors are *MappingError (bad input: CNI code 7) or
// *TableError (the table cannot take it: safe fail, code 100).
func Rules(mappings []PortMapping, opts Options, caps wire.Caps) ([]wire.Rule, error) {
	return nil, errors.New("not implemented")
}

// Plan computes the edit of table t that takes the container from owning
// the rules in owned to owning those in desired: owned rules no longer
// desired are removed (absent ones are fine), desired rules are added
// (already present byte for byte: adopted, not a conflict), everything else
// untouched. It validates the resulting table with the forwarder's checks
// and returns a *TableError naming the rule and the reason when the
// forwarder would reject it.
func Plan(t wire.Table, owned, desired []wire.Rule) (wire.Edit, error) {
	return wire.Edit{}, errors.New("not implemented")
}

// MappingError is a bad port mapping: Index is its place in the list.
type MappingError struct {
	Index   int
	Mapping PortMapping
	Err     error
}

func (e *MappingError) Error() string { return "portMappings entry: " + e.Err.Error() }
func (e *MappingError) Unwrap() error { return e.Err }

// TableError is a rule the table cannot take (conflict, capability, limit).
type TableError struct {
	Pif  string
	Rule wire.Rule
	Err  error
}

func (e *TableError) Error() string { return "pif " + e.Pif + ": " + e.Err.Error() }
func (e *TableError) Unwrap() error { return e.Err }
