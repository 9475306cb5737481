package ctlclient

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Identity names one forwarder across restarts and network namespaces:
// the process that created its listening control socket, as SO_PEERCRED
// reports it on every connection (for pasta, its process before it
// daemonized, which has exited since: a token of that start rather than a
// live process), and the socket file it listens on: its device, inode
// and time of creation (an inode number is reused at once by some file
// systems, a creation time to the nanosecond is not). A forwarder started
// again at the same path has another socket file, and another process
// created it; one in another network namespace than the caller's is told
// apart as well, where /proc/net/unix would not show it.
type Identity struct {
	PeerPID int32  `json:"peerPID"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	// Born is the socket file's birth time (statx), or where the file
	// system keeps none its modification time, which for a socket file
	// is when it was bound; in nanoseconds since the epoch.
	Born int64 `json:"born"`
}

// Known reports whether the identity was established.
func (i Identity) Known() bool { return i.PeerPID > 0 && i.Ino != 0 }

func (i Identity) String() string {
	if !i.Known() {
		return "unknown"
	}
	return fmt.Sprintf("listening socket made by pid %d, socket file inode %d on device %#x made at %d.%09d", i.PeerPID, i.Ino, i.Dev, i.Born/1e9, i.Born%1e9)
}

// OtherForwarderError is a connection that reached another forwarder
// than the ones before it in the same call (see Client.Reached): nothing
// was sent to it.
type OtherForwarderError struct {
	Path      string
	Want, Got Identity
}

func (e *OtherForwarderError) Error() string {
	return fmt.Sprintf("control socket %s: another forwarder answers than before (then: %s; now: %s)", e.Path, e.Want, e.Got)
}

// socketFile returns the identity of the socket file at path (PeerPID
// zero), zero when it cannot be examined or is not a socket.
func socketFile(path string) Identity {
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, path, unix.AT_STATX_SYNC_AS_STAT, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MTIME|unix.STATX_BTIME, &st) != nil ||
		uint32(st.Mode)&unix.S_IFMT != unix.S_IFSOCK {
		return Identity{}
	}
	t := st.Mtime
	if st.Mask&unix.STATX_BTIME != 0 {
		t = st.Btime
	}
	return Identity{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino, Born: t.Sec*1e9 + int64(t.Nsec)}
}

// connIdentity is the identity of the forwarder a connection reached,
// given its peer and the socket file's identity before the connect:
// unknown when the file at the path changed around the connect, since the
// connection may then have gone to either.
func connIdentity(path string, before Identity, peer ucred) Identity {
	after := socketFile(path)
	if after.Ino == 0 || after != before {
		return Identity{}
	}
	after.PeerPID = int32(peer.pid)
	return after
}

// reached calls c.Reached, if set, with the identity of a connection.
func (c *Client) reached(id Identity) error {
	if c.Reached == nil {
		return nil
	}
	return c.Reached(id)
}
