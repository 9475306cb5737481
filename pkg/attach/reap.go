package attach

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// reapLockWait is how long the reaper waits for another attachment's
// record lock: a held lock means a call for that attachment is under way,
// and it is left alone.
const reapLockWait = 20 * time.Millisecond

// reapOrphans releases the managed forwarders of this network whose
// network namespace is gone (forwarder.Orphaned): it stops each that
// still runs, removes its directory and its record. A runtime that
// removed a namespace without a delete (containerd 1.6 stops at the first
// failing DEL of a pod's networks and never calls GC) would otherwise
// leave them for good. Only records of this network are looked at, only
// managed forwarders under this dataDir are touched, and an attachment
// whose lock is held is skipped. Failures are warnings: they must not
// fail the ADD that found them.
func (c *Core) reapOrphans(ctx context.Context, o *Options, self store.Key) {
	if !o.Managed {
		return
	}
	st := recordStore(o)
	entries, err := st.List(self.Network)
	if err != nil {
		c.warnf("looking for forwarders whose namespace is gone: %v", err)
		return
	}
	for _, e := range entries {
		if e.Key == self || !orphan(o, e.Record) {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, reapLockWait)
		lock, err := st.Lock(lctx, e.Key)
		cancel()
		if err != nil {
			continue
		}
		// Judge again under the lock: a DEL or ADD may have come first.
		if rec, err := lock.Read(); err == nil && orphan(o, rec) {
			_, why, _ := forwarder.Orphaned(rec.Dir, rec.Netns)
			if err := stopManaged(ctx, o, rec.Dir); err != nil {
				c.warnf("%s: %s, but: %v", e.Key, why, err)
			} else if err := lock.Remove(); err != nil {
				c.warnf("%s: %v", e.Key, err)
			} else {
				c.warnf("%s: %s: stopped its forwarder and removed its record", e.Key, why)
			}
		}
		_ = lock.Unlock()
	}
}

// orphan reports whether rec is a managed forwarder of this dataDir whose
// namespace is gone.
func orphan(o *Options, rec *store.Record) bool {
	if rec == nil || !rec.Managed || rec.Dir == "" || rec.Netns == "" {
		return false
	}
	base := filepath.Join(o.DataDir, "forwarders") + string(filepath.Separator)
	if !strings.HasPrefix(filepath.Clean(rec.Dir), base) {
		return false
	}
	gone, _, err := forwarder.Orphaned(rec.Dir, rec.Netns)
	return err == nil && gone
}
