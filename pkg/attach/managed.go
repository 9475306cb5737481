package attach

import (
	"context"
	"fmt"
	"os"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// checkChained refuses to start a second network in a namespace that
// another plugin has already configured, unless AllowChained says so.
func checkChained(ctx context.Context, o *Options, fcfg forwarder.Config) error {
	if o.AllowChained {
		return nil
	}
	if o.PriorInterface != "" {
		return chainedErr(fmt.Sprintf("the previous result already has interface %q", o.PriorInterface))
	}
	// A forwarder of ours that is still exiting holds its interface.
	sctx, cancel := o.step(ctx)
	err := forwarder.WaitExited(sctx, fcfg.Dir)
	cancel()
	if err != nil {
		return &forwarderError{Op: "wait for the exit of", Dir: fcfg.Dir, Err: err}
	}
	if _, running, _ := forwarder.Running(fcfg.Dir); running {
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
	return &Error{Kind: KindBadConfig, Msg: "a managed forwarder would be a second network in this namespace",
		Details: why + `; put passt-portmap first with no "socket" to let it make the network, set "socket" to use a forwarder started elsewhere, or set "allowChained": true`}
}

// stopManaged stops the managed forwarder in dir and removes the
// directory.
func stopManaged(ctx context.Context, o *Options, dir string) error {
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
