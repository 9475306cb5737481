package translate

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Reasons, for errors.Is. Every *MappingError and *TableError wraps one.
var (
	ErrProtocol   = errors.New("unsupported protocol")
	ErrPort       = errors.New("port out of range")
	ErrAddress    = errors.New("bad address")
	ErrInterface  = errors.New("bad interface name")
	ErrFamily     = errors.New("address families differ")
	ErrCapability = errors.New("capability missing")
	ErrConflict   = errors.New("conflict")
	ErrTooMany    = errors.New("limit exceeded")
	ErrInvalid    = errors.New("rule refused by the forwarder")
)

// MappingError is a bad port mapping: Index is its place in the list, or
// -1 when the plugin options (target address, interface) are at fault.
type MappingError struct {
	Index   int
	Mapping PortMapping
	Err     error
}

func (e *MappingError) Error() string { return e.In("portMappings") }

// In is the error with the list of mappings named as the caller's input
// names it ("portMappings", "port_mappings").
func (e *MappingError) In(list string) string {
	if e.Index < 0 {
		return "plugin options: " + e.Err.Error()
	}
	return fmt.Sprintf("%s entry %d (%s): %v", list, e.Index, e.Mapping, e.Err)
}

func (e *MappingError) Unwrap() error { return e.Err }

// TableError is a rule the table cannot take (conflict, capability, limit).
type TableError struct {
	Pif  string
	Rule wire.Rule
	Err  error
	// Other is the rule that Rule conflicts with, if that is the reason.
	Other *wire.Rule
	// Entries are the indexes of the portMappings entries that produced
	// Rule, ascending, when known (see Compiled.Attribute).
	Entries []int
}

func (e *TableError) Error() string { return e.In("portMappings") }

// In is the error with the list of mappings named as the caller's input
// names it.
func (e *TableError) In(list string) string {
	s := "pif " + e.Pif + ": " + e.Err.Error()
	if len(e.Entries) > 0 {
		s += " (rule made from " + list + " " + entryList(e.Entries) + ")"
	}
	return s
}

func (e *TableError) Unwrap() error { return e.Err }

// String renders a mapping for messages, e.g.
// `hostPort 8080 -> containerPort 80, protocol "tcp", hostIP "127.0.0.1"`.
func (m PortMapping) String() string {
	s := fmt.Sprintf("hostPort %d -> containerPort %d, protocol %q", m.HostPort, m.ContainerPort, m.Protocol)
	if m.HostIP != "" {
		s += fmt.Sprintf(", hostIP %q", m.HostIP)
	}
	return s
}

// entryList renders ascending indexes as "entry 3" or "entries 0-9999, 10002"
// with at most a few runs spelled out.
func entryList(idx []int) string {
	if len(idx) == 1 {
		return "entry " + strconv.Itoa(idx[0])
	}
	const maxRuns = 6
	var runs []string
	rest := 0
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if len(runs) == maxRuns {
			rest += j - i + 1
		} else if i == j {
			runs = append(runs, strconv.Itoa(idx[i]))
		} else {
			runs = append(runs, strconv.Itoa(idx[i])+"-"+strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	s := "entries " + strings.Join(runs, ", ")
	if rest > 0 {
		s += fmt.Sprintf(" and %d more", rest)
	}
	return s
}

// sortedCopy returns idx sorted, without repeats, in a new slice.
func sortedCopy(idx []int) []int {
	out := slices.Clone(idx)
	slices.Sort(out)
	return slices.Compact(out)
}
