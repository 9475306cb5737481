package attach

import (
	"fmt"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// Whose rules are in a forwarder: a rule has no identity but its 56
// bytes, so the record says which forwarder its rules went to
// (ctlclient.Identity: the process that made the listening control
// socket, and the socket file). A forwarder restarted at the same path,
// or another one bound there while the first still runs, is another
// forwarder: a byte-equal rule in it is another client's. When the
// forwarder's identity cannot be established, now or when the rules were
// added, the plugin cannot prove that the rules are the attachment's, and
// removes none of them: unknown is never taken for the same.

// guard follows the forwarder across the connections of one call: the
// forwarder the first connection reached is the call's, and a later
// connection to another one ends the call before anything is sent to it
// (*ctlclient.OtherForwarderError). first, when set, judges the first
// connection's forwarder; an error it returns ends the call there, before
// anything is sent.
type guard struct {
	socket  string
	first   func(ctlclient.Identity) error
	n       int
	reached ctlclient.Identity
}

// check is the ctlclient.Client.Reached hook.
func (g *guard) check(id ctlclient.Identity) error {
	g.n++
	if g.n == 1 {
		g.reached = id
		if g.first != nil {
			return g.first(id)
		}
		return nil
	}
	if id != g.reached {
		return &ctlclient.OtherForwarderError{Path: g.socket, Want: g.reached, Got: id}
	}
	return nil
}

// notSameError ends a call whose first connection reached another
// forwarder than the one the attachment's rules went to: nothing was
// sent.
type notSameError struct{ why string }

func (e *notSameError) Error() string { return e.why }

// expect returns a guard whose first connection must reach the forwarder
// rec's rules went to (see sameForwarder), or a *notSameError.
func expect(rec *store.Record, socket string) *guard {
	return &guard{socket: socket, first: func(id ctlclient.Identity) error {
		if same, why := sameForwarder(rec, socket, id); !same {
			return &notSameError{why: why}
		}
		return nil
	}}
}

// storeIdentity is id as a record keeps it (nil when unknown).
func storeIdentity(id ctlclient.Identity) *store.Identity {
	if !id.Known() {
		return nil
	}
	return &store.Identity{PeerPID: id.PeerPID, Dev: id.Dev, Ino: id.Ino, Born: id.Born}
}

// recordIdentity is the identity rec's rules went to (unknown when the
// record does not say).
func recordIdentity(rec *store.Record) ctlclient.Identity {
	if rec == nil || rec.Identity == nil {
		return ctlclient.Identity{}
	}
	return ctlclient.Identity{PeerPID: rec.Identity.PeerPID, Dev: rec.Identity.Dev, Ino: rec.Identity.Ino, Born: rec.Identity.Born}
}

// sameForwarder reports whether rec's rules went to the forwarder whose
// identity is now, and, when not, why not (for a warning). A record of an
// earlier version knows its forwarder only by the inode of its listening
// socket in the plugin's /proc/net/unix, which is compared where it can
// be read.
func sameForwarder(rec *store.Record, socket string, now ctlclient.Identity) (bool, string) {
	was := recordIdentity(rec)
	switch {
	case was.Known() && now.Known() && was == now:
		return true, ""
	case was.Known() && now.Known():
		return false, fmt.Sprintf("the forwarder at %s is not the one this attachment's rules were added to (then: %s; now: %s): it was restarted, and they went with the one before", socket, was, now)
	case !was.Known() && rec.ForwarderID != 0:
		if inode := listeningInode(socket); inode != 0 {
			if inode == rec.ForwarderID {
				return true, ""
			}
			return false, fmt.Sprintf("the forwarder at %s was restarted since this attachment's rules were added (control socket inode %d, now %d): they went with it", socket, rec.ForwarderID, inode)
		}
	}
	return false, fmt.Sprintf("which forwarder the rules of this attachment went to cannot be established (recorded: %s; at %s now: %s), so none of them can be proved this attachment's", was, socket, now)
}

// listeningInode is the inode of the one listening control socket at
// socket in the plugin's /proc/net/unix, 0 when there is not exactly one
// (how records of earlier versions identified a forwarder).
func listeningInode(socket string) uint64 {
	inodes, err := procnet.UnixListeners(socket)
	if err != nil || len(inodes) != 1 {
		return 0
	}
	return inodes[0]
}
