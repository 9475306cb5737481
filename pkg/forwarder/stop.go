package forwarder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"syscall"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// Stop stops the forwarder of the attachment in dir and what it forked,
// then removes the socket, the PID file and the identity record. The
// forwarder is the process the identity record names (the one the
// plugin's start checked and recorded), if it is still that process (same
// PID and start time) and of the plugin's uid; what it forked is found
// through it (/proc/PID/task/*/children), never by a name or an
// environment variable that any process could carry: no process of
// another user is signalled, and none can delay Stop. Only when the
// record is lost does Stop look further (see lostForwarders). Each gets
// SIGTERM, and SIGKILL when it has not exited after a second or half the
// time left (within ctx and DefaultTimeout). The cost does not depend on
// the number of processes or forwarders on the machine.
//
// It returns nil when the processes, the socket, the PID file or dir are
// already gone. The logs are left for diagnosis; the caller removes dir
// when it wants it gone.
func Stop(ctx context.Context, dir string) error {
	inst, err := instanceFor(dir)
	if err != nil {
		return err
	}
	d, err := openDir(inst.Dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forwarder: %w", err)
	}
	defer d.Close()
	ctx, cancel := withTimeout(ctx, 0)
	defer cancel()
	unlock, err := lockDir(ctx, d)
	if err != nil {
		return err
	}
	defer unlock()
	if err := stopInstance(ctx, d, inst); err != nil {
		return fmt.Errorf("forwarder: stop pasta in %s: %w", inst.Dir, err)
	}
	return nil
}

// forwarderProcs returns the forwarder of the attachment and its
// descendants: by the identity record, or, when that is lost or damaged,
// as lostForwarders finds them (scan: with the scan of every process).
func forwarderProcs(d *safefs.Dir, inst Instance, scan bool) ([]proc, error) {
	id, err := readIdent(d)
	var roots []proc
	switch {
	case errors.Is(err, errIdentDamaged), err == nil && id == nil:
		roots = lostForwarders(d, inst.Socket, scan)
	case err != nil:
		return nil, err
	default:
		if p, ok := id.current(); ok {
			roots = []proc{p}
		}
	}
	procs := slices.Clone(roots)
	for _, r := range roots {
		procs = append(procs, descendants(r)...)
	}
	return procs, nil
}

// stopInstance stops the forwarder (see Stop) under the directory lock.
func stopInstance(ctx context.Context, d *safefs.Dir, inst Instance) error {
	procs, err := forwarderProcs(d, inst, true)
	if err != nil {
		return err
	}
	if err := stopProcs(ctx, procs); err != nil {
		return err
	}
	return removeLeft(d)
}

// stopProcs sends SIGTERM to each process, then waits until each has
// exited, sending SIGKILL when that takes longer than a second or half the
// time left.
func stopProcs(ctx context.Context, procs []proc) error {
	for _, p := range procs {
		if err := signal(p, syscall.SIGTERM); err != nil {
			return err
		}
	}
	for _, p := range procs {
		if err := waitGone(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// waitGone waits until p, sent SIGTERM, has finished exiting (see
// exited). It sends SIGKILL when that takes longer than a second or half
// the time left.
func waitGone(ctx context.Context, p proc) error {
	grace := time.Second
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl)/2)
	}
	killAt := time.Now().Add(grace)
	killed := false
	backoff := time.Millisecond
	for {
		if exited(p.PID, p.Start) {
			return nil
		}
		if !killed && time.Now().After(killAt) {
			if err := signal(p, syscall.SIGKILL); err != nil {
				return fmt.Errorf("kill pasta (pid %d): %w", p.PID, err)
			}
			killed = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pasta (pid %d) did not exit: %w", p.PID, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 20*time.Millisecond)
	}
}

// Running reports whether the forwarder of the attachment in dir runs:
// the identity record names a live process of ours that is still the one
// recorded (or, the record lost, pasta's PID file names a process of ours
// holding the attachment's control socket). ok is false with a nil error
// when there is none; pid is then 0. err is set when the directory or
// record cannot be used (see package safefs).
func Running(dir string) (pid int, ok bool, err error) {
	inst, err := instanceFor(dir)
	if err != nil {
		return 0, false, err
	}
	d, err := openDir(inst.Dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer d.Close()
	p, _, ok, err := running(d, inst)
	return p.PID, ok, err
}

// running finds the forwarder (see Running) and its identity record (nil
// when lost).
func running(d *safefs.Dir, inst Instance) (proc, *identity, bool, error) {
	id, err := readIdent(d)
	if err != nil && !errors.Is(err, errIdentDamaged) {
		return proc{}, nil, false, err
	}
	if id != nil {
		p, ok := id.current()
		return p, id, ok, nil
	}
	if ps := lostForwarders(d, inst.Socket, false); len(ps) > 0 {
		return ps[0], nil, true, nil
	}
	return proc{}, nil, false, nil
}
