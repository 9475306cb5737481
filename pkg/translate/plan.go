package translate

import (
	"fmt"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

type ruleKey = [wire.RuleSize]byte

func plan(t wire.Table, owned, desired []wire.Rule) (wire.Edit, error) {
	edit := wire.Edit{Pif: t.Name()}
	want := make(map[ruleKey]bool, len(desired))
	for _, r := range desired {
		k := r.Key()
		if !want[k] {
			want[k] = true
			edit.Add = append(edit.Add, r)
		}
	}
	gone := make(map[ruleKey]bool, len(owned))
	for _, r := range owned {
		k := r.Key()
		if !want[k] && !gone[k] {
			gone[k] = true
			edit.Remove = append(edit.Remove, r)
		}
	}
	if err := validate(t, t.Apply(edit)); err != nil {
		return wire.Edit{}, err
	}
	return edit, nil
}

// validate checks next, the table that an edit of prev produces, as the
// forwarder would on receiving it. Rules of next not in prev are "new";
// a reason found on a rule of prev (which the forwarder accepted before)
// is still reported, since the forwarder would refuse the whole update.
func validate(prev, next wire.Table) error {
	name := next.Name()
	old := make(map[ruleKey]bool, len(prev.Rules))
	for _, r := range prev.Rules {
		old[r.Key()] = true
	}
	isNew := func(r wire.Rule) bool { return !old[r.Key()] }
	// The count first: it bounds the pairwise conflict check below.
	if n := len(next.Rules); n > wire.MaxRules {
		culprit := next.Rules[n-1]
		for _, r := range next.Rules[wire.MaxRules:] {
			if isNew(r) {
				culprit = r
				break
			}
		}
		return &TableError{Pif: name, Rule: culprit, Err: fmt.Errorf(
			"%w: the table would hold %d rules, %d over the forwarder's limit of %d (first rule over the limit: %s)",
			ErrTooMany, n, n-wire.MaxRules, wire.MaxRules, culprit)}
	}
	spans := make([]span, len(next.Rules))
	for i, r := range next.Rules {
		spans[i] = spanOf(r)
	}
	ports := 0
	for i, r := range next.Rules {
		fresh := isNew(r)
		if err := checkRule(r, next.Caps); err != nil {
			if !fresh {
				err = fmt.Errorf("rule %s, already in the table, would be refused: %w", r, err)
			} else {
				err = fmt.Errorf("rule %s: %w", r, err)
			}
			return &TableError{Pif: name, Rule: r, Err: err}
		}
		if fresh && r.IfName[0] != 0 && !next.Caps.Has(wire.CapIfName) {
			return &TableError{Pif: name, Rule: r, Err: fmt.Errorf(
				"%w: rule %s binds to an interface, but the table cannot (caps %s)", ErrCapability, r, next.Caps)}
		}
		for j := range i {
			if !spans[j].overlaps(&spans[i]) {
				continue
			}
			o := next.Rules[j]
			var how string
			switch {
			case fresh && isNew(o):
				how = "another rule being added"
			case fresh:
				how = "a rule already in the table"
			default:
				how = "another rule already in the table"
			}
			return &TableError{Pif: name, Rule: r, Other: &o, Err: fmt.Errorf(
				"%w: rule %s overlaps %s, %s", ErrConflict, r, how, o)}
		}
		ports += r.Ports()
		if ports > wire.MaxListenPorts {
			total := ports
			for _, x := range next.Rules[i+1:] {
				total += x.Ports()
			}
			return &TableError{Pif: name, Rule: r, Err: fmt.Errorf(
				"%w: the table would need %d listening ports, %d over the forwarder's limit of %d (first rule over the limit: %s)",
				ErrTooMany, total, total-wire.MaxListenPorts, wire.MaxListenPorts, r)}
		}
	}
	return nil
}
