package attach

import (
	"context"
	"fmt"

	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Del removes exactly what the attachment owns, then its record.
// Whatever is already gone (forwarder, socket, record, rules) counts as
// removed. Without a record (ADD never completed) it stops the managed
// forwarder, or removes the rules ms translate to where present byte for
// byte and owned by no other record; an external forwarder with an empty
// Options.Socket then removes nothing.
func (c *Core) Del(ctx context.Context, k Key, o Options, ms []Mapping) error {
	st := recordStore(&o)
	key := k.storeKey()
	lock, rec, err := c.lockRecord(ctx, &o, st, key, "removing what the configuration names instead")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if rec != nil {
		if err := c.release(ctx, &o, st, rec); err != nil {
			return err
		}
		return lock.Remove()
	}
	switch {
	case o.Managed:
		if err := stopManaged(ctx, &o, forwarderDir(o.DataDir, key)); err != nil {
			return err
		}
	case len(ms) == 0:
	case o.Socket == "":
		c.warnf("no record and no socket in this call: nothing to remove")
	default:
		comp, err := newCompiler(ms, &o)
		if err != nil {
			return err
		}
		if err := c.removeMapped(ctx, &o, st, key, comp); err != nil {
			return err
		}
	}
	return lock.Remove()
}

// release removes a recorded attachment's rules, or stops its managed
// forwarder, which serves this attachment alone and takes its rules with
// it.
func (c *Core) release(ctx context.Context, o *Options, st *store.Store, rec *store.Record) error {
	if rec.Managed && rec.Dir != "" {
		return stopManaged(ctx, o, rec.Dir)
	}
	if claimed := rec.Claimed(); len(claimed) > 0 && rec.Socket != "" {
		return c.removeRules(ctx, o, st, rec.Key(), rec.Socket, rec.PIDFile, claimed)
	}
	return nil
}

// removeRules takes rules out of the forwarder at socket in one
// transaction, leaving any rule that another attachment also owns. A
// forwarder that is gone has no rules left: that is success.
func (c *Core) removeRules(ctx context.Context, o *Options, st *store.Store, self store.Key, socket, pidFile string, rules []wire.PifRule) error {
	shared := sharedRules(st, self, socket)
	var mine []wire.PifRule
	for _, r := range rules {
		if shared[r.Key()] {
			c.warnf("leaving %s in place: another attachment owns it too", r)
			continue
		}
		mine = append(mine, r)
	}
	if len(mine) == 0 || ForwarderGone(ctx, socket) {
		return nil
	}
	plan := func(live wire.Tables) ([]wire.Edit, error) { return removalEdits(live, mine), nil }
	err := c.update(ctx, o, socket, pidFile, plan)
	if gone(err) {
		return nil
	}
	return atSocket(socket, err)
}

// removeMapped removes the rules the mappings translate to, where present
// byte for byte and owned by no other record.
func (c *Core) removeMapped(ctx context.Context, o *Options, st *store.Store, key store.Key, comp *compiler) error {
	socket := o.Socket
	if ForwarderGone(ctx, socket) {
		return nil
	}
	shared := sharedRules(st, key, socket)
	plan := func(live wire.Tables) ([]wire.Edit, error) {
		host := live.Lookup(wire.PifHost)
		if host == nil {
			return nil, nil
		}
		// The rules ADD made from these mappings: all of them compacted
		// together, or, when ADD saw other mappings, each on its own.
		// Mappings the forwarder could not take were never added.
		cands, _ := comp.rules(host.Caps)
		for _, one := range comp.each() {
			if rs, err := one.rules(host.Caps); err == nil {
				cands = append(cands, rs...)
			}
		}
		var rm []wire.Rule
		seen := map[[wire.RuleSize]byte]bool{}
		for _, r := range cands {
			if k := r.Key(); host.Contains(r) && !sharedHost(shared, r) && !seen[k] {
				seen[k] = true
				rm = append(rm, r)
			}
		}
		if len(rm) == 0 {
			return nil, nil
		}
		return []wire.Edit{{Pif: wire.PifHost, Remove: rm}}, nil
	}
	err := c.update(ctx, o, socket, o.PIDFile, plan)
	if gone(err) {
		return nil
	}
	if err != nil {
		return atSocket(socket, fmt.Errorf("remove the configured mappings: %w", err))
	}
	return nil
}
