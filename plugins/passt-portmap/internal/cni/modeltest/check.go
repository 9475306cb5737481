package modeltest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// invariants checks the promises that hold after every step.
func (m *Model) invariants() error {
	ts, err := m.fwd.tables()
	if err != nil {
		return fmt.Errorf("read tables: %w", err)
	}
	host := ts.Lookup(wire.PifHost)
	if host == nil {
		return errors.New("no HOST table")
	}
	for k, r := range m.foreign {
		if !host.Contains(r) {
			return fmt.Errorf("another client's rule %s was removed or changed", r)
		}
		_ = k
	}
	// Owners are the records of the forwarder running now: a record's
	// claims on a forwarder restarted since are void.
	now, err := m.fwd.identity()
	if err != nil {
		return fmt.Errorf("identity of the forwarder: %w", err)
	}
	owners := map[[wire.RuleSize]byte][]int{}
	for i := 0; i < modelAtts; i++ {
		claims, err := m.claims(i)
		if err != nil {
			return err
		}
		if rec, err := m.st.Get(modelKey(i)); err == nil && rec.Identity != nil && *rec.Identity != now {
			continue
		}
		seen := map[[wire.RuleSize]byte]bool{}
		for _, c := range claims {
			if c.Pif == wire.PifHost && !seen[c.Rule.Key()] {
				seen[c.Rule.Key()] = true
				owners[c.Rule.Key()] = append(owners[c.Rule.Key()], i)
			}
		}
	}
	present := map[[wire.RuleSize]byte]bool{}
	for _, r := range host.Rules {
		k := r.Key()
		present[k] = true
		if _, foreign := m.foreign[k]; foreign {
			// Another client's rule stays another client's: a record
			// of this forwarder claiming it adopted it.
			if len(owners[k]) > 0 {
				return fmt.Errorf("another client's rule %s is claimed by the records of attachments %v", r, owners[k])
			}
			continue
		}
		if m.orphaned[k] {
			continue
		}
		switch n := len(owners[k]); {
		case n == 0:
			return fmt.Errorf("rule %s is in the forwarder, owned by no record and no other client's", r)
		case n > 1:
			return fmt.Errorf("rule %s is owned by the records of attachments %v", r, owners[k])
		}
	}
	for k := range m.orphaned {
		if !present[k] {
			delete(m.orphaned, k)
		}
	}
	return nil
}

// checkAgrees runs CHECK of att and fails when it disagrees with the
// model.
func (m *Model) checkAgrees(att int) error {
	want, why := m.checkExpected(att)
	_, err := m.verb("CHECK", att, m.conf(att, nil), 0)
	if (err == nil) != want {
		return fmt.Errorf("CHECK of a%d: %v, but the model expects success=%v: %s", att, err, want, why)
	}
	return nil
}

// checkExpected says whether CHECK of att must succeed: its record is
// readable and owns the rule of its mappings, which is present and
// listening.
func (m *Model) checkExpected(att int) (bool, string) {
	rec, err := m.st.Get(modelKey(att))
	if err != nil {
		return false, "record: " + err.Error()
	}
	r, err := m.rule(att, m.variant[att])
	if err != nil {
		return false, err.Error()
	}
	owned := false
	for _, o := range rec.Rules {
		owned = owned || o.Pif == wire.PifHost && o.Rule.Equal(r)
	}
	if !owned {
		return false, "the record does not own " + r.String()
	}
	if m.addedGen[att] != m.gen {
		return false, "the forwarder was restarted since the rules were added"
	}
	ts, err := m.fwd.tables()
	if err != nil {
		return false, "tables: " + err.Error()
	}
	for _, o := range rec.Rules {
		if t := ts.Lookup(o.Pif); t == nil || !t.Contains(o.Rule) {
			return false, "missing " + o.Rule.String()
		}
		if o.Pif == wire.PifHost {
			if err := m.fwd.listening(o.Rule); err != nil {
				return false, fmt.Sprintf("not listening %s: %v", o.Rule, err)
			}
		}
	}
	return true, "owned, present and listening"
}

// released checks what a DEL or GC that succeeded promises for att.
func (m *Model) released(att int, verb string) error {
	ts, err := m.fwd.tables()
	if err != nil {
		return fmt.Errorf("read tables: %w", err)
	}
	host := ts.Lookup(wire.PifHost)
	for v := 0; v < modelVariants; v++ {
		r, err := m.rule(att, v)
		if err != nil {
			return err
		}
		k := r.Key()
		if host.Contains(r) && !m.orphaned[k] {
			if _, foreign := m.foreign[k]; !foreign {
				return fmt.Errorf("%s of a%d succeeded and left its rule %s in the forwarder", verb, att, r)
			}
		}
	}
	for _, path := range []string{m.st.RecordPath(modelKey(att)), m.st.BackupPath(modelKey(att))} {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s of a%d succeeded and left %s", verb, att, path)
		}
	}
	return nil
}

// mustWork fails when a verb that met no fault did not succeed: the
// model's liveness.
func mustWork(verb string, att int, err error, ok bool, why string) error {
	if err != nil && ok {
		return fmt.Errorf("%s of a%d met no fault (%s) and failed: %v", verb, att, why, err)
	}
	return nil
}

// readable says whether att's record can be read (or there is none): a
// record the test damaged beyond its backup copy is a fault.
func (m *Model) readable(att int) bool {
	_, err := m.st.Get(modelKey(att))
	return err == nil || errors.Is(err, fs.ErrNotExist)
}

// addCanWork says whether an ADD of att with variant meets no fault: its
// record is readable, no port is taken (a rule that cannot listen keeps
// the forwarder from binding the rules after it, anyone's), and no other
// client's rule is on its port and protocol.
func (m *Model) addCanWork(att, variant int) (bool, string) {
	if !m.readable(att) {
		return false, "its record is damaged"
	}
	if len(m.held) > 0 {
		return false, "a port is taken"
	}
	r, err := m.rule(att, variant)
	if err != nil {
		return false, err.Error()
	}
	overlaps := func(x wire.Rule) bool { return x.Proto == r.Proto && x.First <= r.Last && r.First <= x.Last }
	for _, f := range m.foreign {
		if overlaps(f) {
			return false, "another client's rule is on its port: " + f.String()
		}
	}
	// A rule on its port that its record does not claim (one whose
	// record the test removed) is no longer known to be its own.
	claims, err := m.claims(att)
	if err != nil {
		return false, err.Error()
	}
	ts, err := m.fwd.tables()
	if err != nil {
		return false, err.Error()
	}
	for _, x := range ts.Lookup(wire.PifHost).Rules {
		if overlaps(x) && !slices.ContainsFunc(claims, func(c store.OwnedRule) bool { return c.Pif == wire.PifHost && c.Rule.Equal(x) }) {
			return false, "a rule its record does not claim is on its port: " + x.String()
		}
	}
	return true, "record readable, no port taken, its port free of others' rules"
}
