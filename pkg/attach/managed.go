package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/safefs"
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
		return &SecondNetworkError{Why: fmt.Sprintf("namespace %s already has an interface other than lo", fcfg.NetNS)}
	}
	return nil
}

// forwardersDir opens dataDir/forwarders (see package safefs), making it
// with create.
func forwardersDir(o *Options, create bool) (*safefs.Dir, error) {
	var (
		root *safefs.Dir
		err  error
	)
	if create {
		root, err = safefs.Ensure(o.DataDir, 0o750)
	} else {
		root, err = safefs.Open(o.DataDir)
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.Sub(forwardersName, create, 0o750)
}

// ensureForwarders makes and checks dataDir/forwarders.
func ensureForwarders(o *Options) error {
	d, err := forwardersDir(o, true)
	if err != nil {
		return err
	}
	return d.Close()
}

// stopManaged stops the managed forwarder in dir, an attachment's
// directory under dataDir/forwarders (checkRecord made sure of that), and
// removes the directory, through descriptors: nothing in it, or in its
// place, is followed. A directory in an unsafe place (a forwarders
// directory others could write to, a link in its place) is refused.
func stopManaged(ctx context.Context, o *Options, dir string) error {
	fw, err := forwardersDir(o, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer fw.Close()
	name := filepath.Base(dir)
	if filepath.Join(fw.Path(), name) != filepath.Clean(dir) {
		return &recordDirError{Dir: dir, Want: filepath.Join(fw.Path(), name)}
	}
	if ok, err := fw.Exists(name); err != nil {
		return &forwarderError{Op: "inspect the directory of", Dir: dir, Err: err}
	} else if !ok {
		return nil
	}
	ctx, cancel := o.step(ctx)
	defer cancel()
	if err := forwarder.Stop(ctx, dir); err != nil {
		return &forwarderError{Op: "stop", Dir: dir, Err: err}
	}
	if err := fw.RemoveAll(name); err != nil {
		return &forwarderError{Op: "remove the directory of", Dir: dir, Err: err}
	}
	return nil
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
