package ctlclient

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// listeningRule listens on a free loopback TCP port (closed on cleanup)
// and returns tables holding a rule for that port, and the rule as the
// caller's own.
func listeningRule(t *testing.T) (wire.Tables, []PifRule) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	r := wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), port, port, 80, 0)
	return wire.Tables{wire.NewTable(1, wire.PifHost, 0x3f, r)}, []PifRule{{Pif: wire.PifHost, Rule: r}}
}

// Where the forwarder's fds cannot be read, listeners are attributed by
// uid: a socket of the forwarder's uid counts, one of another uid not.
func TestAttributionByUID(t *testing.T) {
	ts, mine := listeningRule(t)
	c := &Client{}
	for _, tc := range []struct {
		uid    uint32
		failed int
	}{{uint32(os.Getuid()), 0}, {uint32(os.Getuid()) + 4242, 1}} {
		f := forwarder{pid: os.Getpid(), uid: tc.uid} // fds nil: "unreadable"
		lc, err := c.checkOnce(&f, ts, mine, nil)
		if err != nil || lc.method != VerifyUID || len(lc.failed) != tc.failed {
			t.Fatalf("uid %d: %+v %v", tc.uid, lc, err)
		}
	}
	// By inode: only the sockets the process holds (init holds not ours).
	f := initForwarder(t)
	if lc, err := c.checkOnce(&f, ts, mine, nil); err != nil || lc.method != VerifyInodes || len(lc.failed) != 1 {
		t.Fatalf("by inode with none held: %+v %v", lc, err)
	}
}

// A listener at a missing port that the fd table read did not hold is
// reported as unknown; once the table is read again without it, it is
// foreign and the next check does not ask for another read.
func TestUnknownListenerRereadOnce(t *testing.T) {
	ts, mine := listeningRule(t)
	c := &Client{}
	// init (pid 1) does not hold this socket.
	f := initForwarder(t)
	lc, err := c.checkOnce(&f, ts, mine, nil)
	if err != nil || len(lc.failed) != 1 || len(lc.unknown) != 1 {
		t.Fatalf("first check: %+v %v", lc, err)
	}
	f.reread(lc.unknown)
	if !f.foreign[lc.unknown[0]] {
		t.Fatalf("inode %d not foreign after a read of pid 1's table", lc.unknown[0])
	}
	lc, err = c.checkOnce(&f, ts, mine, nil)
	if err != nil || len(lc.failed) != 1 || len(lc.unknown) != 0 {
		t.Fatalf("after the read: %+v %v", lc, err)
	}
	// The same socket, in the forwarder's table: it listens.
	f = forwarder{pid: os.Getpid()}
	f.reread(nil)
	if lc, err := c.checkOnce(&f, ts, mine, nil); err != nil || len(lc.failed) != 0 || len(lc.unknown) != 0 {
		t.Fatalf("own socket: %+v %v", lc, err)
	}
}

// initForwarder is a forwarder whose fd table is init's (pid 1), which
// holds none of the test's sockets.
func initForwarder(t *testing.T) forwarder {
	t.Helper()
	fds, err := procnet.ScanFDs(1)
	if err != nil {
		t.Fatalf("fd table of pid 1 (the tests run as root): %v", err)
	}
	return forwarder{pid: 1, fds: fds}
}

// The port set holds exactly the ports added, at both ends of the range.
func TestPortSet(t *testing.T) {
	var p portSet
	for _, port := range []uint16{0, 63, 64, 65535} {
		p.add(port)
	}
	for port := range 65536 {
		want := port == 0 || port == 63 || port == 64 || port == 65535
		if p.has(uint16(port)) != want {
			t.Fatalf("has(%d) = %v", port, !want)
		}
	}
	if (*portSet)(nil).has(1) {
		t.Fatal("a nil set has a port")
	}
}
