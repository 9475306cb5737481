package modeltest

import (
	"context"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// forwarder is the forwarder of a run and what another client, or
// the machine, can do to it.
type forwarder interface {
	socket() (path, pidFile string)
	client() func(socket, pidFile string) *ctlclient.Client // nil: the plugin's default
	tables() (wire.Tables, error)
	// foreignAdd adds r as pesto -A would, and reports whether the
	// forwarder took it.
	foreignAdd(r wire.Rule) bool
	foreignRemove(r wire.Rule)
	restart() error
	// hold makes the port unbindable for the forwarder from its next
	// switch on, as another process listening there would, unless the
	// forwarder holds it now; it reports whether it did. free undoes it
	// where that is deterministic (pasta retries binds by itself), and
	// reports whether it did.
	hold(r wire.Rule) bool
	free(port uint16) bool
	// identity is the forwarder's, as a record of rules sent to it
	// names it.
	identity() (store.Identity, error)
	// listening says whether every port of r has a listener where the
	// forwarder binds it, found by connecting to it: nil when it does.
	listening(r wire.Rule) error
	close()
}

// readIdentity is the identity of the forwarder at socket, as the plugin
// records it.
func readIdentity(socket string) (store.Identity, error) {
	snap, err := (&ctlclient.Client{Path: socket, Timeout: 10 * time.Second}).Read(context.Background())
	if err != nil {
		return store.Identity{}, err
	}
	id := snap.Identity
	return store.Identity{PeerPID: id.PeerPID, Dev: id.Dev, Ino: id.Ino, Born: id.Born}, nil
}
