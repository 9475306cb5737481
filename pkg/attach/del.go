package attach

import (
	"context"
	"errors"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Del removes exactly what the attachment owns, then its record.
// Whatever is already gone (forwarder, socket, record, rules) counts as
// removed. Without a record the attachment has sent nothing (ADD writes
// its intent before it sends anything): Del then stops the managed
// forwarder of its key, if any, and removes no rule (a rule that matches
// ms is another client's). A record that cannot be read is an error that
// says what to do.
func (c *Core) Del(ctx context.Context, k Key, o Options, ms []Mapping) error {
	if err := o.resolve(); err != nil {
		return err
	}
	if err := store.EnsureDir(o.DataDir); err != nil {
		return err
	}
	st := recordStore(&o)
	key := k.storeKey()
	lock, rec, err := c.lockRecord(ctx, &o, st, key)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if err := c.step("del: locked"); err != nil {
		return err
	}
	if rec != nil {
		if err := c.release(ctx, &o, rec); err != nil {
			return err
		}
		if err := c.step("del: released"); err != nil {
			return err
		}
		return lock.Remove()
	}
	if o.Managed {
		// The forwarder directory of this key under our own dataDir can
		// only have been made by an ADD of this attachment.
		if err := stopManaged(ctx, &o, forwarderDir(o.DataDir, key)); err != nil {
			return err
		}
	} else if len(ms) > 0 {
		c.warnf("no ownership record for %s: it added nothing, so no rule was removed (the %d configured mapping(s) were not looked up in the forwarder: a rule matching them is another client's)", key, len(ms))
	}
	return lock.Remove()
}

// release removes a recorded attachment's rules, or stops its managed
// forwarder, which serves this attachment alone and takes its rules with
// it (a chained one's side is removed from the pod's namespace first).
// Rules are removed only from the forwarder they were added to: when the
// one at the socket now is another, or cannot be told (see
// sameForwarder), none is, and a warning says so.
func (c *Core) release(ctx context.Context, o *Options, rec *store.Record) error {
	if rec.Managed {
		return c.releaseManaged(ctx, o, rec)
	}
	if claimed := rec.Claimed(); len(claimed) > 0 && rec.Socket != "" {
		return c.removeRules(ctx, o, rec, claimed)
	}
	return nil
}

// removeRules takes rules of rec out of its forwarder in one transaction,
// leaving any rule that another attachment also owns. A forwarder that is
// gone has no rules left: that is success. So is another forwarder at the
// socket, or one that cannot be told: nothing is removed from it.
func (c *Core) removeRules(ctx context.Context, o *Options, rec *store.Record, rules []wire.PifRule) error {
	socket := rec.Socket
	shared := sharedRules(o, rec.Key(), socket)
	var mine []wire.PifRule
	for _, r := range rules {
		if shared[r.Key()] {
			c.warnf("leaving %s in place: another attachment owns it too", r)
			continue
		}
		mine = append(mine, r)
	}
	if len(mine) == 0 {
		return nil
	}
	plan := func(live wire.Tables) ([]wire.Edit, error) { return removalEdits(live, mine), nil }
	// A forwarder that is gone has none of the rules; one that is only
	// starting is another process, with none of them either: the
	// removal does not wait for either to answer (see ForwarderGone).
	// Rules are taken out only of the forwarder they went to (expect).
	err := c.updateWith(ctx, o, socket, rec.PIDFile, expect(rec, socket), plan, time.Millisecond)
	if gone(err) {
		return nil
	}
	var (
		ns  *notSameError
		ofe *ctlclient.OtherForwarderError
	)
	switch {
	case errors.As(err, &ns):
		c.warnf("%s; none of them was removed: byte-equal rules there now are another client's and stay", ns.why)
		return nil
	case errors.As(err, &ofe):
		c.warnf("%v; none of this attachment's rules was removed from it", err)
		return nil
	}
	return atSocket(socket, err)
}
