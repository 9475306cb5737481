package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// GC releases every attachment of network that valid does not list (by
// container ID and interface), as Del would. Attachments of other
// networks are not looked at. A failure is a *GCError naming each stale
// attachment that could not be released.
func (c *Core) GC(ctx context.Context, network string, o Options, valid []Key) error {
	if err := o.resolve(); err != nil {
		return err
	}
	keep := map[[2]string]bool{}
	for _, k := range valid {
		keep[[2]string{k.ContainerID, k.IfName}] = true
	}
	if err := store.CheckDir(o.DataDir); errors.Is(err, fs.ErrNotExist) {
		return nil // nothing was ever recorded
	} else if err != nil {
		return err
	}
	st := recordStore(&o)
	entries, err := listRecords(&o, network)
	if err != nil {
		return err
	}
	var failed []error
	for _, e := range entries {
		if keep[[2]string{e.Key.ContainerID, e.Key.IfName}] {
			continue
		}
		if err := c.collect(ctx, &o, st, e.Key); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", e.Key, err))
		}
	}
	// What killed calls left: lock files of attachments without a record,
	// temporary files of unfinished writes. Sweep takes each attachment's
	// lock without waiting and leaves what a call holds.
	if _, err := st.Sweep(network); err != nil {
		failed = append(failed, err)
	}
	if len(failed) == 0 {
		return nil
	}
	return &GCError{Failed: failed}
}

// GCError lists the stale attachments GC could not release.
type GCError struct{ Failed []error }

func (e *GCError) Error() string {
	return fmt.Sprintf("GC could not release %d stale attachment(s): %v", len(e.Failed), errors.Join(e.Failed...))
}

// Unwrap returns the failures.
func (e *GCError) Unwrap() []error { return e.Failed }

// collect releases one stale attachment under its lock. One whose record
// cannot be read (nor its backup copy) stays, reported: what it owns is
// unknown, and removing it would orphan its rules.
func (c *Core) collect(ctx context.Context, o *Options, st *store.Store, key store.Key) error {
	lock, rec, err := c.lockRecord(ctx, o, st, key)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if rec != nil {
		if err := c.release(ctx, o, rec); err != nil {
			return err
		}
	}
	return lock.Remove()
}
