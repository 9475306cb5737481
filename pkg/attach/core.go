package attach

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// ListenWait is how long a listener check polls before it declares a
// port not listening. The client checks while it holds a connection, so no
// other client's switch (which closes and reopens every listener) can come
// between the tables it read and the listeners it sees; the wait only
// covers pasta's own retry of failed binds, and holds up other clients of
// the forwarder while it lasts, so it is short.
const ListenWait = 300 * time.Millisecond

func (c *Core) warnf(format string, a ...any) {
	if c.Warn != nil {
		c.Warn(fmt.Sprintf(format, a...))
	}
}

// client is the control socket client of the forwarder at socket. A
// managed forwarder's PID file, under dataDir, is read only through its
// directory's safe layer, as every other file there.
func (c *Core) client(o *Options, socket, pidFile string) *ctlclient.Client {
	cl := &ctlclient.Client{Path: socket, PIDFile: pidFile, ListenWait: ListenWait}
	if c.Client != nil {
		cl = c.Client(socket, pidFile)
	}
	if dir := filepath.Dir(pidFile); pidFile != "" && filepath.Dir(dir) == filepath.Join(o.DataDir, forwardersName) {
		cl.ReadPID = func() (int, error) { return forwarder.ReadPID(dir) }
	}
	cl.Step = c.Step
	return cl
}

// step calls the Step hook, if any, at a named step.
func (c *Core) step(name string) error {
	if c.Step == nil {
		return nil
	}
	return c.Step(name)
}

// warnDamaged reports a record file that was read from its backup copy.
func (c *Core) warnDamaged(damaged error) {
	if damaged == nil {
		return
	}
	var ce *store.CorruptError
	if errors.As(damaged, &ce) && ce.Backup != "" {
		c.warnf("%v; using its backup copy %s, the next write repairs it", damaged, ce.Backup)
		return
	}
	c.warnf("%v", damaged)
}

func (o *Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// step bounds one blocking step by the timeout and the caller's context.
func (o *Options) step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.timeout())
}

func (k Key) storeKey() store.Key {
	return store.Key{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName}
}

// recordStore is the ownership store under the data directory.
func recordStore(o *Options) *store.Store {
	return store.New(filepath.Join(o.DataDir, "records"))
}

// forwarderDir is the directory of an attachment's managed forwarder. It
// is named by a hash of the key: the socket path inside it must stay
// under the 108 bytes of a UNIX socket address, and container IDs are
// often 64 characters long. The record names the directory.
func forwarderDir(dataDir string, k store.Key) string {
	return filepath.Join(dataDir, forwardersName, shortHash(k.Network+"\x00"+k.ContainerID+"\x00"+k.IfName))
}

// shortHash names a directory after s: the first 64 bits of its SHA-256,
// in hex, short enough to keep a socket path in it under the limit.
func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// forwardersName is the directory of the managed forwarders' directories
// in dataDir.
const forwardersName = "forwarders"

// socketErr ties an error to the socket it happened on, for messages.
type socketErr struct {
	Socket string
	Err    error
}

func (e *socketErr) Error() string { return e.Err.Error() }
func (e *socketErr) Unwrap() error { return e.Err }

func atSocket(socket string, err error) error {
	if err == nil {
		return nil
	}
	return &socketErr{Socket: socket, Err: err}
}

// gone reports whether err says the forwarder no longer exists: its
// socket is missing or nobody listens on it. A busy forwarder is not gone.
func gone(err error) bool {
	var ue *ctlclient.UnreachableError
	return errors.As(err, &ue) && forwarder.Gone(ue.Err)
}

// ForwarderGone makes one connection attempt: a socket file that is
// missing or refuses connections belongs to no running forwarder, whose
// rules are gone with it. The client retries both for a while
// (ctlclient.Client.StartWait), which suits a forwarder that is starting;
// this answers at once. A connection that succeeds is closed at once,
// before sending anything: a read-only transaction.
func ForwarderGone(ctx context.Context, socket string) bool {
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	return forwarder.Gone(forwarder.Probe(ctx, socket, false))
}

// update runs one transaction on the forwarder at socket, bounded by the
// timeout, and reports other owners' rules that do not listen. g, when
// set, follows the forwarder across its connections (see guard).
func (c *Core) update(ctx context.Context, o *Options, socket, pidFile string, g *guard, plan ctlclient.Planner) error {
	return c.updateWith(ctx, o, socket, pidFile, g, plan, 0)
}

// updateWith is update with the client's StartWait (0: its default).
func (c *Core) updateWith(ctx context.Context, o *Options, socket, pidFile string, g *guard, plan ctlclient.Planner, startWait time.Duration) error {
	ctx, cancel := o.step(ctx)
	defer cancel()
	cl := c.client(o, socket, pidFile)
	if startWait > 0 {
		cl.StartWait = startWait
	}
	if g != nil {
		cl.Reached = g.check
	}
	res, err := cl.Update(ctx, plan, ctlclient.UpdateOptions{NoVerify: !o.Verify})
	if res != nil {
		c.reportWarnings(socket, res.Warnings)
	}
	return err
}

func (c *Core) reportWarnings(socket string, ws []ctlclient.RuleFailure) {
	for _, w := range ws {
		c.warnf("forwarder at %s: rule of another owner does not listen: %s: host ports %s", socket, w.PifRule, wire.PortList(w.Ports))
	}
}
