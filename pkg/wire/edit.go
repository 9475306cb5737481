package wire

// Edit is one change to one pif's table, by the pif's name: rules to take
// out and rules to have in. It is the unit by which an update is judged and
// undone.
type Edit struct {
	Pif    string
	Remove []Rule // taken out where present (byte for byte); absent is fine
	Add    []Rule // appended where not present byte for byte; present ones stay where they are
}

// Apply returns a copy of t with e applied: every rule byte-equal to one in
// e.Remove and not in e.Add dropped, then every rule of e.Add not yet
// present appended in e.Add's order. All other rules, and rules of e.Add
// already present, keep their bytes and their places. Apply does not
// validate: see package translate.
func (t Table) Apply(e Edit) Table {
	drop := make(map[[RuleSize]byte]bool, len(e.Remove))
	for _, r := range e.Remove {
		drop[r.Key()] = true
	}
	for _, r := range e.Add {
		delete(drop, r.Key())
	}
	out := t
	out.Rules = make([]Rule, 0, len(t.Rules)+len(e.Add))
	have := make(map[[RuleSize]byte]bool, len(t.Rules)+len(e.Add))
	for _, r := range t.Rules {
		k := r.Key()
		if drop[k] {
			continue
		}
		have[k] = true
		out.Rules = append(out.Rules, r)
	}
	for _, r := range e.Add {
		k := r.Key()
		if !have[k] {
			have[k] = true
			out.Rules = append(out.Rules, r)
		}
	}
	return out
}

// Contains reports whether t holds a rule byte-equal to r.
func (t *Table) Contains(r Rule) bool {
	k := r.Key()
	for _, x := range t.Rules {
		if x.Key() == k {
			return true
		}
	}
	return false
}
