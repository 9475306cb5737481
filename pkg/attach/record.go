package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// The records, in one place. Every reader of a record (Add, Del, Check,
// GC, the orphan reaper, the shared-rule lookup of a removal) gets it
// through lockRecord, loadRecord or listRecords, which all make the one
// check, checkRecord: what a record may make the plugin do is bounded
// there, whoever reads it.
//
// A record is a file only root (or the plugin's user) can write, in a
// directory only they can write to (see package safefs); the plugin
// trusts its word on what the attachment added, as far as that
// directory is trusted. What it never trusts a record for is a path: a
// managed record must name its own attachment's directory and socket
// under dataDir, so that a record can never make the plugin stop,
// remove or talk to another attachment's forwarder.

// checkRecord is the one check of a record read from the store.
func checkRecord(o *Options, rec *store.Record) error {
	if rec == nil {
		return nil
	}
	want := forwarderDir(o.DataDir, rec.Key())
	if rec.Managed {
		p := forwarder.Paths(want)
		if rec.Dir != want || rec.Socket != p.Socket || rec.PIDFile != p.PIDFile {
			return &recordDirError{Dir: rec.Dir, Socket: rec.Socket, Want: want, Key: rec.Key()}
		}
		return nil
	}
	if rec.Dir != "" {
		return &recordDirError{Dir: rec.Dir, Socket: rec.Socket, Want: "", Key: rec.Key()}
	}
	return nil
}

// lockRecord takes the attachment's lock and reads its record. A record
// that cannot be read (nor its backup copy) is an error: replacing it
// would disown the rules it names, which would stay in the forwarder with
// no owner. So is a record that fails checkRecord.
func (c *Core) lockRecord(ctx context.Context, o *Options, st *store.Store, key store.Key) (*store.Locked, *store.Record, error) {
	lctx, cancel := o.step(ctx)
	lock, err := st.Lock(lctx, key)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	rec, err := lock.Read()
	if err == nil {
		c.warnDamaged(lock.Damaged())
		err = checkRecord(o, rec)
	}
	if err != nil {
		lock.Unlock()
		return nil, nil, err
	}
	return lock, rec, nil
}

// loadRecord reads the attachment's record without its lock (nil and no
// error when there is none), checked.
func (c *Core) loadRecord(o *Options, key store.Key) (*store.Record, error) {
	rec, damaged, err := recordStore(o).Load(key)
	c.warnDamaged(damaged)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := checkRecord(o, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// listRecords lists the records of a network, each checked: one that
// fails checkRecord is listed with that error and no record, as one
// that cannot be read is.
func listRecords(o *Options, network string) ([]store.Entry, error) {
	es, err := recordStore(o).List(network)
	if err != nil {
		return nil, err
	}
	for i := range es {
		if es[i].Err != nil {
			continue
		}
		if err := checkRecord(o, es[i].Record); err != nil {
			es[i].Record, es[i].Err = nil, err
		}
	}
	return es, nil
}

// recordDirError is a record naming a managed forwarder directory or
// socket that is not its attachment's (Want "" for a record of a
// forwarder started elsewhere, which names no directory).
type recordDirError struct {
	Dir, Socket, Want string
	Key               store.Key
}

func (e *recordDirError) Error() string {
	if e.Want == "" {
		return fmt.Sprintf("the record of %s is not of a managed forwarder, yet names the directory %q; nothing was stopped or removed: remove the record", e.Key, e.Dir)
	}
	return fmt.Sprintf("the record of %s names the managed forwarder directory %q and socket %q, not this attachment's %s; nothing was stopped or removed: stop that forwarder by hand if it is one, then remove the record", e.Key, e.Dir, e.Socket, e.Want)
}
