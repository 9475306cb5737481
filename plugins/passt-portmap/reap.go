package main

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
// removed a namespace without calling DEL (containerd 1.6 stops at the
// first failing DEL of a pod's networks and never calls GC) would
// otherwise leave them for good. Only records of this network are looked at, only managed
// forwarders under this dataDir are touched, and an attachment whose lock
// is held is skipped. Failures are warnings: they must not fail the ADD
// that found them.
func (p *Plugin) reapOrphans(cfg *Config, self store.Key) {
	if !cfg.Managed {
		return
	}
	st := recordStore(cfg)
	entries, err := st.List(cfg.Network)
	if err != nil {
		p.warnf("looking for forwarders whose namespace is gone: %v", err)
		return
	}
	for _, e := range entries {
		if e.Key == self || !p.orphan(cfg, e.Record) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), reapLockWait)
		lock, err := st.Lock(ctx, e.Key)
		cancel()
		if err != nil {
			continue
		}
		// Judge again under the lock: a DEL or ADD may have come first.
		if rec, err := lock.Read(); err == nil && p.orphan(cfg, rec) {
			_, why, _ := forwarder.Orphaned(rec.Dir, rec.Netns)
			if err := stopManaged(cfg, rec.Dir); err != nil {
				p.warnf("%s: %s, but: %v", e.Key, why, err)
			} else if err := lock.Remove(); err != nil {
				p.warnf("%s: %v", e.Key, err)
			} else {
				p.warnf("%s: %s: stopped its forwarder and removed its record", e.Key, why)
			}
		}
		_ = lock.Unlock()
	}
}

// orphan reports whether rec is a managed forwarder of this dataDir whose
// namespace is gone.
func (p *Plugin) orphan(cfg *Config, rec *store.Record) bool {
	if rec == nil || !rec.Managed || rec.Dir == "" || rec.Netns == "" {
		return false
	}
	base := filepath.Join(cfg.DataDir, "forwarders") + string(filepath.Separator)
	if !strings.HasPrefix(filepath.Clean(rec.Dir), base) {
		return false
	}
	gone, _, err := forwarder.Orphaned(rec.Dir, rec.Netns)
	return err == nil && gone
}
