package ctlclient

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
)

// Where the forwarder's fds cannot be read, listeners are attributed by
// uid: a socket of the forwarder's uid counts, one of another uid not.
func TestAttributionByUID(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	r := wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), port, port, 80, 0)
	ts := wire.Tables{wire.NewTable(1, wire.PifHost, 0x3f, r)}
	mine := []PifRule{{Pif: wire.PifHost, Rule: r}}
	c := &Client{}
	for _, tc := range []struct {
		uid    uint32
		failed int
	}{{uint32(os.Getuid()), 0}, {uint32(os.Getuid()) + 4242, 1}} {
		f := forwarder{pid: os.Getpid(), uid: tc.uid} // inodes nil: fds "unreadable"
		lc, err := c.checkOnce(f, ts, mine)
		if err != nil || lc.method != VerifyUID || len(lc.failed) != tc.failed {
			t.Fatalf("uid %d: %+v %v", tc.uid, lc, err)
		}
	}
	// By inode: only the sockets the process holds (init holds not ours).
	f := forwarder{pid: 1, inodes: map[uint64]bool{}}
	if lc, err := c.checkOnce(f, ts, mine); err != nil || lc.method != VerifyInodes || len(lc.failed) != 1 {
		t.Fatalf("by inode with none held: %+v %v", lc, err)
	}
}

func TestPortList(t *testing.T) {
	for _, tc := range []struct {
		in   []uint16
		want string
	}{{nil, ""}, {[]uint16{1}, "1"}, {[]uint16{1, 2, 3, 5, 7, 8}, "1-3, 5, 7-8"}, {[]uint16{65534, 65535}, "65534-65535"}} {
		if got := portList(tc.in); got != tc.want {
			t.Errorf("portList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
