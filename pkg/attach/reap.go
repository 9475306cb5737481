package attach

import (
	"context"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// reapLockWait is how long the reaper waits for another attachment's
// record lock: a held lock means a call for that attachment is under way,
// and it is left alone.
const reapLockWait = 20 * time.Millisecond

// reapBudget is how many records of the network one managed ADD looks at
// for forwarders whose namespace is gone: a few, in turns (store.Scan),
// so that an ADD costs the same on a node with a thousand pods as on one
// with none, and every record is looked at within a bounded number of
// ADDs.
const reapBudget = 6

// reapOrphans releases the managed forwarders of this network whose
// network namespace is gone (forwarder.Orphaned): it stops each that
// still runs, removes its directory and its record. A runtime that
// removed a namespace without a delete (containerd 1.6 stops at the first
// failing DEL of a pod's networks and never calls GC) would otherwise
// leave them for good. Only up to reapBudget records of this network are
// looked at, each read and checked as every record is (checkRecord), so
// only managed forwarders of their own attachments under this dataDir
// are touched, and an attachment whose lock is held is skipped. Failures
// are warnings: they must not fail the ADD that found them.
func (c *Core) reapOrphans(ctx context.Context, o *Options, self store.Key) {
	if !o.Managed {
		return
	}
	st := recordStore(o)
	keys, err := st.Scan(self.Network, reapBudget)
	if err != nil {
		c.warnf("looking for forwarders whose namespace is gone: %v", err)
		return
	}
	for _, k := range keys {
		if k != self {
			c.reapOne(ctx, o, st, k)
		}
	}
}

// reapOne releases the attachment k if it is a managed forwarder whose
// namespace is gone: judged first without its lock (most are not), then
// again under it (taken without waiting long), since a DEL or ADD may
// have come first.
func (c *Core) reapOne(ctx context.Context, o *Options, st *store.Store, k store.Key) {
	if rec, err := c.loadRecord(o, k); err != nil {
		return
	} else if gone, _ := orphan(rec); !gone {
		return
	}
	lo := *o
	lo.Timeout = reapLockWait
	lock, rec, err := c.lockRecord(ctx, &lo, st, k)
	if err != nil {
		return // held by a call, or not a record to act on: its own calls report it
	}
	defer lock.Unlock()
	gone, why := orphan(rec)
	if !gone {
		return
	}
	if err := stopManaged(ctx, o, rec.Dir); err != nil {
		c.warnf("%s: %s, but: %v", k, why, err)
	} else if err := lock.Remove(); err != nil {
		c.warnf("%s: %v", k, err)
	} else {
		c.warnf("%s: %s: stopped its forwarder and removed its record", k, why)
	}
}

// orphan reports whether rec, checked, is a managed forwarder whose
// namespace is gone, and what was found.
func orphan(rec *store.Record) (bool, string) {
	if rec == nil || !rec.Managed || rec.Netns == "" {
		return false, ""
	}
	gone, why, err := forwarder.Orphaned(rec.Dir, rec.Netns)
	return err == nil && gone, why
}
