package translate

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Compiled is what Compile makes of a container's mappings: the rules, and
// for each the portMappings entries it came from.
type Compiled struct {
	Rules []wire.Rule
	// sources[i] holds the indexes of the entries behind Rules[i], in
	// host port order (repeats included).
	sources [][]int
}

// Entries returns the indexes of the portMappings entries that produced
// rule r, ascending, or nil if r is not one of c's rules.
func (c Compiled) Entries(r wire.Rule) []int {
	k := r.Key()
	for i, x := range c.Rules {
		if x.Key() == k {
			return sortedCopy(c.sources[i])
		}
	}
	return nil
}

// Attribute fills in the Entries of a *TableError (from Plan) whose rule
// is one of c's, so that the message says which mappings are at fault. It
// returns err, changed in place; other errors are returned as they are.
func (c Compiled) Attribute(err error) error {
	if te, ok := err.(*TableError); ok && te.Entries == nil {
		te.Entries = c.Entries(te.Rule)
	}
	return err
}

// Compile translates and compacts mappings as Rules does, and keeps for
// each rule the entries it came from.
//
// Compaction: entries of the same protocol and listening address (the
// options are common to all) whose host and container ports both advance
// by one become one range rule; exact duplicates collapse. Two entries
// that claim the same protocol and host port on overlapping addresses (a
// dual-stack rule overlaps everything, an "any" address every address of
// its family) but are not duplicates are a *MappingError naming both: the
// forwarder would refuse the pair. The work is two sorts, O(n log n).
func Compile(mappings []PortMapping, opts Options, caps wire.Caps) (Compiled, error) {
	o, err := parseOptions(opts)
	if err != nil {
		return Compiled{}, err
	}
	es := make([]entry, 0, len(mappings))
	for i, m := range mappings {
		if es, err = parseEntries(es, i, m, &o, caps); err != nil {
			return Compiled{}, err
		}
	}
	if err := findClaims(es, mappings); err != nil {
		return Compiled{}, err
	}
	c := merge(es, &o)
	if n := len(c.Rules); n > wire.MaxRules {
		return Compiled{}, &TableError{Pif: wire.PifHost, Rule: c.Rules[wire.MaxRules], Err: fmt.Errorf(
			"%w: the mappings need %d rules after compaction, %d over the forwarder's limit of %d per table",
			ErrTooMany, n, n-wire.MaxRules, wire.MaxRules)}
	}
	return c, nil
}

// findClaims sorts es by protocol and host port and reports two entries
// that claim the same port on overlapping addresses and are not exact
// duplicates. Within one (protocol, host port) group, sorted by flags,
// address and container port, a conflict exists exactly when a dual-stack
// entry shares the group with another claim, an "any" address with another
// claim of its family, or two adjacent claims have the same address.
func findClaims(es []entry, ms []PortMapping) error {
	slices.SortFunc(es, byPort)
	same := func(a, b entry) bool { return a.flags == b.flags && a.listen == b.listen && a.cont == b.cont }
	for lo := 0; lo < len(es); {
		hi := lo + 1
		for hi < len(es) && es[hi].proto == es[lo].proto && es[hi].host == es[lo].host {
			hi++
		}
		g := es[lo:hi]
		lo = hi
		if same(g[0], g[len(g)-1]) {
			continue // one claim, perhaps repeated: the common case
		}
		var dual, any4e, any6e *entry
		for k := range g {
			e := &g[k]
			switch {
			case e.flags&wire.FlagDualStack != 0:
				dual = pick(dual, e)
			case e.listen == any4:
				any4e = pick(any4e, e)
			case e.listen == any6:
				any6e = pick(any6e, e)
			}
		}
		for k := range g {
			e := &g[k]
			var other *entry
			switch {
			case dual != nil && !same(*dual, *e):
				other = dual
			case isV4(e.listen) && any4e != nil && !same(*any4e, *e):
				other = any4e
			case !isV4(e.listen) && any6e != nil && !same(*any6e, *e):
				other = any6e
			case k > 0 && g[k-1].flags == e.flags && g[k-1].listen == e.listen && g[k-1].cont != e.cont:
				other = &g[k-1]
			}
			if other != nil {
				return claimError(ms, *other, *e)
			}
		}
	}
	return nil
}

// pick keeps the entry that comes first in the mappings list.
func pick(cur, e *entry) *entry {
	if cur == nil || e.idx < cur.idx {
		return e
	}
	return cur
}

func claimError(ms []PortMapping, a, b entry) error {
	if a.idx > b.idx {
		a, b = b, a
	}
	why := "on overlapping addresses"
	if a.flags == b.flags && a.listen == b.listen {
		why = fmt.Sprintf("with different container ports %d and %d", a.cont, b.cont)
	}
	return &MappingError{Index: b.idx, Mapping: ms[b.idx], Err: fmt.Errorf(
		"%w: it and entry %d (%s) both claim %s host port %d %s",
		ErrConflict, a.idx, ms[a.idx], a.proto, b.host, why)}
}

// merge sorts es by rule identity and host port and joins runs whose host
// and container ports both advance by one. es must be free of conflicting
// claims (see findClaims); exact duplicates are skipped.
func merge(es []entry, o *options) Compiled {
	slices.SortFunc(es, byRule)
	var c Compiled
	idx := make([]int, len(es)) // one backing array for every rule's sources
	for k, e := range es {
		idx[k] = e.idx
	}
	for lo := 0; lo < len(es); {
		first := es[lo]
		last := first
		hi := lo + 1
		for ; hi < len(es); hi++ {
			e := es[hi]
			if e.proto != first.proto || e.listen != first.listen || e.flags != first.flags {
				break
			}
			if e.host == last.host { // an exact duplicate (claims are checked)
				continue
			}
			if int(e.host) != int(last.host)+1 || int(e.cont) != int(last.cont)+1 {
				break
			}
			last = e
		}
		c.Rules = append(c.Rules, o.rangeRule(first, last.host, first.cont))
		c.sources = append(c.sources, idx[lo:hi:hi])
		lo = hi
	}
	return c
}

// byPort orders entries by protocol, host port, flags, address, container
// port and place in the list. (Early returns: this is the hot loop.)
func byPort(a, b entry) int {
	if a.proto != b.proto {
		return cmp.Compare(a.proto, b.proto)
	}
	if a.host != b.host {
		return cmp.Compare(a.host, b.host)
	}
	if a.flags != b.flags {
		return cmp.Compare(a.flags, b.flags)
	}
	if a.listen != b.listen {
		return bytes.Compare(a.listen[:], b.listen[:])
	}
	if a.cont != b.cont {
		return cmp.Compare(a.cont, b.cont)
	}
	return cmp.Compare(a.idx, b.idx)
}

// byRule orders entries by protocol, address, flags, host port and place
// in the list: the order of the rules that come out.
func byRule(a, b entry) int {
	if a.proto != b.proto {
		return cmp.Compare(a.proto, b.proto)
	}
	if a.listen != b.listen {
		return bytes.Compare(a.listen[:], b.listen[:])
	}
	if a.flags != b.flags {
		return cmp.Compare(a.flags, b.flags)
	}
	if a.host != b.host {
		return cmp.Compare(a.host, b.host)
	}
	return cmp.Compare(a.idx, b.idx)
}
