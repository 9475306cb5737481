package modeltest

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// together runs ops (ADD and DEL of distinct attachments, and another
// client's update of a rule on a pool port) at the same time, with the
// port of the first taken first when hold says so (freed after, where
// the forwarder makes that deterministic), then checks what the calls
// promise. ADDs at the same time share batches (one leads, the others
// wait), and any call may be stopped, leader or waiter. A call that was
// not stopped and met no fault must succeed (liveness), whoever ran its
// transaction: a waiter whose leader was stopped is served by the next
// leader. An ADD whose port was taken in the group may fail, but then
// alone: the others of its batch are run again without it and succeed,
// as long as its rule was not in the table before (a rule that stays in
// the table not listening keeps the forwarder from binding the rules
// after it) and it was not stopped after sending. Every ADD that
// succeeded has its rules present and listening, a DEL that succeeded
// left none. When any call was stopped, the rules of every attachment
// of the group are in doubt (see settle) unless its call completed: the
// one stopped may have been leading the others' ADDs.
func (m *Model) together(ops []op, hold bool) error {
	type result struct {
		stopped string
		took    bool
		err     error
	}
	res := make([]result, len(ops))
	canWork := make([]bool, len(ops))
	whys := make([]string, len(ops))
	stamps := make([]time.Time, len(ops))
	for i, x := range ops {
		switch x.kind {
		case opAdd:
			stamps[i] = m.stamp(x.att)
			m.variant[x.att] = x.variant
			canWork[i], whys[i] = m.addCanWork(x.att, x.variant)
		case opDel:
			canWork[i], whys[i] = m.readable(x.att), "its record readable"
		}
	}
	// Ports taken before the group keep rules after them unbound: what
	// succeeds then need not listen (see the single ADD's check).
	safe := len(m.held) == 0
	var held uint16
	if hold {
		r, err := m.rule(ops[0].att, ops[0].variant)
		if err != nil {
			return err
		}
		present, err := m.onPort(r)
		if err != nil {
			return err
		}
		if m.fwd.hold(r) {
			held = r.First
			m.held[held] = true
			m.trace = append(m.trace, "    held the port of a"+strconv.Itoa(ops[0].att))
			canWork[0], whys[0] = false, "its port is taken"
			if present || ops[0].stopAt != 0 {
				// Its rule may stay in the table, not listening.
				safe = false
				for i := range canWork {
					canWork[i], whys[i] = false, "the port of a"+strconv.Itoa(ops[0].att)+" is taken while its rule may stay in the table"
				}
			}
		}
	}
	var wg sync.WaitGroup
	for i, x := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch x.kind {
			case opAdd:
				res[i].stopped, res[i].err = m.verb("ADD", x.att, m.conf(x.att, nil), x.stopAt)
			case opDel:
				res[i].stopped, res[i].err = m.verb("DEL", x.att, m.conf(x.att, nil), x.stopAt)
			case opForeignAdd:
				res[i].took = m.fwd.foreignAdd(m.foreignRule(x.foreign))
			case opForeignRemove:
				if _, ok := m.foreign[m.foreignRule(x.foreign).Key()]; ok {
					m.fwd.foreignRemove(m.foreignRule(x.foreign))
					res[i].took = true
				}
			}
		}()
	}
	wg.Wait()
	anyStopped := false
	for i := range ops {
		anyStopped = anyStopped || res[i].stopped != ""
	}
	for i, x := range ops {
		r := m.foreignRule(x.foreign)
		switch {
		case x.kind == opForeignAdd && res[i].took:
			m.foreign[r.Key()] = r
		case x.kind == opForeignRemove && res[i].took:
			delete(m.foreign, r.Key())
		case x.kind == opAdd || x.kind == opDel:
			m.settle(x.att, res[i].stopped, res[i].err)
			if x.kind == opAdd {
				m.rewritten(x.att, stamps[i])
			}
			if anyStopped && (res[i].stopped != "" || res[i].err != nil) {
				m.doubt[x.att] = true
			}
		}
	}
	for i, x := range ops {
		if x.kind != opAdd && x.kind != opDel {
			continue
		}
		if x.stopAt == 0 || res[i].stopped == "" {
			verb := map[opKind]string{opAdd: "ADD", opDel: "DEL"}[x.kind]
			if err := mustWork(verb+" (at the same time as others)", x.att, res[i].err, canWork[i], whys[i]); err != nil {
				return err
			}
		}
		if res[i].err != nil || res[i].stopped != "" {
			continue
		}
		switch x.kind {
		case opDel:
			if err := m.released(x.att, "DEL"); err != nil {
				return err
			}
		case opAdd:
			// Success means every rule of the attachment listens, after
			// the calls made at the same time too.
			if !safe {
				continue
			}
			if ok, why := m.checkExpected(x.att); !ok {
				return fmt.Errorf("ADD of a%d (at the same time as others) succeeded, but %s", x.att, why)
			}
		}
	}
	if held != 0 && m.fwd.free(held) {
		delete(m.held, held)
		m.trace = append(m.trace, "    freed it")
	}
	return nil
}

// onPort reports whether a rule on the port and protocol of r is in the
// forwarder's host table.
func (m *Model) onPort(r wire.Rule) (bool, error) {
	ts, err := m.fwd.tables()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(ts.Lookup(wire.PifHost).Rules, func(x wire.Rule) bool {
		return x.Proto == r.Proto && x.First <= r.Last && r.First <= x.Last
	}), nil
}
