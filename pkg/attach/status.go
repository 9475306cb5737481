package attach

import (
	"context"
	"fmt"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// Status reports whether an ADD could be served now: the data directory
// is writable; a managed forwarder's pasta is present and new enough; a
// fixed socket (Options.Socket, "" when it depends on the container and
// cannot be checked before there is one) answers with a protocol version
// the client speaks. A failure is a *StatusError, or the client's error.
func (c *Core) Status(ctx context.Context, o Options) error {
	if err := o.resolve(); err != nil {
		return &StatusError{Err: err}
	}
	if err := canRecord(&o); err != nil {
		return &StatusError{Err: settingErr(SettingDataDir, "%s cannot take a record: %w", o.DataDir, err)}
	}
	sctx, cancel := o.step(ctx)
	defer cancel()
	if o.Managed {
		if err := forwarder.CheckBinary(sctx, o.Pasta); err != nil {
			return &StatusError{Err: fmt.Errorf("managed forwarder: %w", err)}
		}
		return nil
	}
	if o.Socket == "" {
		return nil
	}
	if _, err := c.client(&o, o.Socket, o.PIDFile).Read(sctx); err != nil {
		return &StatusError{Err: fmt.Errorf("forwarder at %s: %w", o.Socket, err)}
	}
	return nil
}

// recordSize is the room a record takes at most: that of an attachment
// with a full table (255 rules, owned and pending, at some 200 bytes
// each), in its file and its backup copy.
const recordSize = 128 << 10

// canRecord checks that the data directory is safe (see store.CheckDir)
// and that a record can be written into it now: a full file system, or
// one mounted read-only, cannot take one. It writes nothing; store.Room
// makes and checks the data directory on its way to the records'.
func canRecord(o *Options) error {
	return recordStore(o).Room(recordSize)
}
