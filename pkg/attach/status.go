package attach

import (
	"context"
	"fmt"
	"os"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// Status reports whether an ADD could be served now: the data directory
// is writable; a managed forwarder's pasta is present and new enough; a
// fixed socket (Options.Socket, "" when it depends on the container and
// cannot be checked before there is one) answers with a protocol version
// the client speaks. A failure is a *StatusError, or the client's error.
func (c *Core) Status(ctx context.Context, o Options) error {
	if err := dirWritable(o.DataDir); err != nil {
		return &StatusError{Err: fmt.Errorf("data directory (dataDir) %s is not writable: %w", o.DataDir, err)}
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
	if _, err := c.client(o.Socket, o.PIDFile).Read(sctx); err != nil {
		return &StatusError{Err: fmt.Errorf("forwarder at %s: %w", o.Socket, err)}
	}
	return nil
}

// dirWritable creates dir if needed and a file in it, then removes it.
func dirWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".status-*")
	if err != nil {
		return err
	}
	name := f.Name()
	err = f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}
