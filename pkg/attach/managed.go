package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// checkChained refuses to start a second network in a namespace that
// another plugin has already configured without saying so in a previous
// result (which would make the attachment chained, see modeOf), unless
// AllowChained says so. ours says the attachment's own forwarder ran in
// this namespace.
func checkChained(o *Options, fcfg forwarder.Config, ours bool) error {
	if o.AllowChained {
		return nil
	}
	if _, running, _ := forwarder.Running(fcfg.Dir); running || ours {
		return nil // our own forwarder made the interface
	}
	attached, err := forwarder.Attached(fcfg.NetNS)
	if err != nil {
		return &forwarderError{Op: "inspect the namespace of", Dir: fcfg.Dir, Err: err}
	}
	if attached {
		return chainedErr(fmt.Sprintf("namespace %s already has an interface other than lo", fcfg.NetNS))
	}
	return nil
}

func chainedErr(why string) error {
	return &SecondNetworkError{Why: why}
}

// stopManaged stops the managed forwarder in dir, an attachment's
// directory under dataDir/forwarders, and removes the directory. A
// directory that is not a real one of ours (a symbolic link, or in a
// forwarders directory others could write to) is left alone.
func stopManaged(ctx context.Context, o *Options, dir string) error {
	if err := store.CheckDir(filepath.Dir(dir)); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return &forwarderError{Op: "inspect the directory of", Dir: dir, Err: err}
	} else if !fi.IsDir() {
		return &store.UnsafeError{Path: dir, What: "is not a directory (a managed forwarder's directory is one)"}
	}
	ctx, cancel := o.step(ctx)
	defer cancel()
	if err := forwarder.Stop(ctx, dir); err != nil {
		return &forwarderError{Op: "stop", Dir: dir, Err: err}
	}
	if err := os.RemoveAll(dir); err != nil {
		return &forwarderError{Op: "remove the directory of", Dir: dir, Err: err}
	}
	return nil
}

// checkManagedDir refuses a record of a managed forwarder whose directory
// is not the one the core makes for its key under dataDir: the directory
// is stopped and removed by Del and GC, so a record must never be able to
// name another.
func checkManagedDir(o *Options, rec *store.Record) error {
	if want := forwarderDir(o.DataDir, rec.Key()); rec.Dir != want {
		return &recordDirError{Dir: rec.Dir, Want: want, Key: rec.Key()}
	}
	return nil
}

// recordDirError is a record naming a managed forwarder directory that is
// not its attachment's.
type recordDirError struct {
	Dir, Want string
	Key       store.Key
}

func (e *recordDirError) Error() string {
	return fmt.Sprintf("the record of %s names the managed forwarder directory %q, not this attachment's %s; nothing was stopped or removed: stop that forwarder by hand if it is one, then remove the record", e.Key, e.Dir, e.Want)
}

// forwarderError is a managed forwarder that could not be started,
// inspected or stopped.
type forwarderError struct {
	Op  string
	Dir string
	Err error
}

func (e *forwarderError) Error() string {
	return fmt.Sprintf("could not %s the managed forwarder in %s: %v", e.Op, e.Dir, e.Err)
}
func (e *forwarderError) Unwrap() error { return e.Err }
