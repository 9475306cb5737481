package attach

import (
	"fmt"

	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// The ownership policy, in one place. An attachment owns the rules its
// record names and claims those plus its pending ones (store.Record).
// Against the live tables of one transaction:
//
//   - remove: claimed rules no longer desired (absent ones are fine), and
//     claimed rules of other pifs;
//   - add: desired rules not in the table;
//   - adopt: desired rules already in the table that the attachment
//     claims (a run that died after the forwarder took them);
//   - refuse: a desired rule already in the table that it does not claim:
//     another client (pesto, another runtime) put it there byte for byte
//     and keeps it; the update is refused as the forwarder would refuse a
//     duplicate.
//
// translate.Plan computes the host table's edit once the refusals are
// out: it treats every desired rule as the caller's.

// planEdits decides the edits of an ADD: desired host rules against the
// live tables, given the rules the attachment claims.
func planEdits(live wire.Tables, claimed []wire.PifRule, desired []wire.Rule) ([]wire.Edit, error) {
	host := live.Lookup(wire.PifHost)
	if host == nil {
		return nil, &translate.TableError{Pif: wire.PifHost, Err: fmt.Errorf("%w: the forwarder has no %s table", translate.ErrCapability, wire.PifHost)}
	}
	pifs, byPif := wire.ByPif(claimed)
	mine := map[wire.PifRuleKey]bool{}
	for _, x := range claimed {
		mine[x.Key()] = true
	}
	for _, r := range desired {
		if !mine[wire.PifRule{Pif: wire.PifHost, Rule: r}.Key()] && host.Contains(r) {
			return nil, &translate.TableError{Pif: wire.PifHost, Rule: r, Other: &r, Err: fmt.Errorf(
				"%w: rule %s is already in the table and this attachment does not own it (another client, such as pesto, added it); remove it there or map another port",
				translate.ErrConflict, r)}
		}
	}
	edit, err := translate.Plan(*host, byPif[wire.PifHost], desired)
	if err != nil {
		return nil, err
	}
	edits := []wire.Edit{edit}
	for _, pif := range pifs {
		if pif != wire.PifHost && live.Lookup(pif) != nil {
			edits = append(edits, wire.Edit{Pif: pif, Remove: byPif[pif]})
		}
	}
	return edits, nil
}

// removalEdits takes rules out of the live tables: those present of each
// pif, in one edit per pif.
func removalEdits(live wire.Tables, rules []wire.PifRule) []wire.Edit {
	pifs, byPif := wire.ByPif(rules)
	var edits []wire.Edit
	for _, pif := range pifs {
		if live.Lookup(pif) != nil {
			edits = append(edits, wire.Edit{Pif: pif, Remove: byPif[pif]})
		}
	}
	return edits
}

// sharedRules returns the rules that other attachments of the network
// record as theirs on the same socket: a removal must leave them alone.
func sharedRules(o *Options, self store.Key, socket string) map[wire.PifRuleKey]bool {
	out := map[wire.PifRuleKey]bool{}
	es, err := listRecords(o, self.Network)
	if err != nil {
		return out
	}
	for _, e := range es {
		if e.Key == self || e.Record == nil || e.Record.Socket != socket {
			continue
		}
		for _, o := range e.Record.Rules {
			out[o.Key()] = true
		}
	}
	return out
}
