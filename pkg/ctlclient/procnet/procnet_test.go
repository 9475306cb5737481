package procnet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

const unixSample = `Num       RefCount Protocol Flags    Type St Inode Path
00000000d5dbb125: 00000002 00000000 00010000 0001 01 577493 /tmp/a b.sock
0000000074c116b4: 00000003 00000000 00000000 0001 03  1607
00000000aaaaaaaa: 00000002 00000000 00000000 0001 01 1608 /tmp/x.sock
00000000bbbbbbbb: 00000002 00000000 00010000 0005 01 1609 @abstract
`

func TestParseUnix(t *testing.T) {
	socks, err := ParseUnix([]byte(unixSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []UnixSocket{
		{Flags: 0x10000, Type: 1, State: 1, Inode: 577493, Path: "/tmp/a b.sock"},
		{Flags: 0, Type: 1, State: 3, Inode: 1607},
		{Flags: 0, Type: 1, State: 1, Inode: 1608, Path: "/tmp/x.sock"},
		{Flags: 0x10000, Type: 5, State: 1, Inode: 1609, Path: "@abstract"},
	}
	if !slices.Equal(socks, want) {
		t.Fatalf("got %+v\nwant %+v", socks, want)
	}
	if !socks[0].Listening() || socks[2].Listening() {
		t.Fatal("Listening")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    string
		udp  bool
		unix bool
	}{
		{"unix bad flags", "h\n0: 1 0 zz 0001 01 5 /p\n", false, true},
		{"unix bad inode", "h\n0: 1 0 0 0001 01 x /p\n", false, true},
		{"unix short", "h\n0: 1\n", false, true},
		{"inet short", "h\n 0: 0100007F:0050 00000000:0000 0A\n", false, false},
		{"inet no colon", "h\n 0: 0100007F 00000000:0000 0A 0:0 0:0 0 0 0 1\n", false, false},
		{"inet bad port", "h\n 0: 0100007F:XYZ 00000000:0000 0A 0:0 0:0 0 0 0 1\n", false, false},
		{"inet odd addr", "h\n 0: 0100007:0050 00000000:0000 0A 0:0 0:0 0 0 0 1\n", false, false},
		{"inet 8 bytes", "h\n 0: 0100007F0100007F:0050 00000000:0000 0A 0:0 0:0 0 0 0 1\n", false, false},
		{"inet bad uid", "h\n 0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 -1 0 1\n", false, false},
		{"inet bad state", "h\n 0: 0100007F:0050 00000000:0000 GG 0:0 0:0 0 0 0 1\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.unix {
				_, err = ParseUnix([]byte(tc.b))
			} else {
				_, err = ParseInet([]byte(tc.b), tc.udp)
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
		})
	}
}

func TestParseInet(t *testing.T) {
	// Lines as a little-endian kernel prints them.
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0200007F:46AA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18733 1 000000006fca06ea 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 18734 1 000000006fca06ea 100 0 0 10 0
`
	udp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 6371: 00000000000000000000000001000000:4A38 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 18734 2 00000000e72dcff8 0
 6372: 0000000000000000FFFF00000100007F:4A39 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   65534        0 18735 2 0000000095e17799 0
`
	got, err := ParseInet([]byte(tcp), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []InetSocket{
		{Local: netip.MustParseAddrPort("127.0.0.2:18090"), State: 0x0a, Inode: 18733},
		{Local: netip.MustParseAddrPort("127.0.0.1:8080"), State: 1, UID: 1000, Inode: 18734},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("tcp got %+v", got)
	}
	if !got[0].Listening() || got[1].Listening() {
		t.Fatal("Listening")
	}
	got, err = ParseInet([]byte(udp6), true)
	if err != nil {
		t.Fatal(err)
	}
	want = []InetSocket{
		{UDP: true, Local: netip.MustParseAddrPort("[::1]:19000"), State: 7, Inode: 18734},
		{UDP: true, Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:19001"), State: 7, UID: 65534, Inode: 18735},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("udp6 got %+v", got)
	}
}

// TestLive checks the readers against sockets this test creates.
func TestLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	inodes, err := UnixListeners(path)
	if err != nil || len(inodes) != 1 {
		t.Fatalf("UnixListeners = %v, %v", inodes, err)
	}
	pid, err := FindHolder(inodes)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("FindHolder = %d, %v; want %d", pid, err, os.Getpid())
	}
	if ok, err := Holds(os.Getpid(), inodes); !ok || err != nil {
		t.Fatalf("Holds = %v, %v", ok, err)
	}

	tl, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	mine, err := SocketInodes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ls, err := Listeners(filepath.Join(Root, "self", "net"))
	if err != nil {
		t.Fatal(err)
	}
	wantT := tl.Addr().(*net.TCPAddr).AddrPort()
	wantU := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	var foundT, foundU bool
	for _, s := range ls {
		foundT = foundT || (!s.UDP && s.Local == wantT && mine[s.Inode])
		foundU = foundU || (s.UDP && s.Local.Port() == wantU.Port() && s.Local.Addr() == wantU.Addr().Unmap() && mine[s.Inode])
	}
	if !foundT || !foundU {
		t.Fatalf("listeners %v: tcp6 %v found %v, udp %v found %v", ls, wantT, foundT, wantU, foundU)
	}
}

// TestDiagMatchesProc: both sources list this test's listeners alike.
func TestDiagMatchesProc(t *testing.T) {
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	ul, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	diag, err := DiagListeners()
	if err != nil {
		t.Fatal(err)
	}
	proc, err := Listeners(filepath.Join(Root, "self", "net"))
	if err != nil {
		t.Fatal(err)
	}
	mine, err := SocketInodes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	pick := func(ss []InetSocket) []InetSocket {
		var out []InetSocket
		for _, s := range ss {
			if mine[s.Inode] {
				out = append(out, s)
			}
		}
		slices.SortFunc(out, func(a, b InetSocket) int { return int(a.Inode) - int(b.Inode) })
		return out
	}
	d, p := pick(diag), pick(proc)
	if len(d) != 2 || !slices.Equal(d, p) {
		t.Fatalf("sock_diag %+v\n/proc %+v", d, p)
	}
}

// diagMsg builds one sock_diag answer message, as the kernel lays it out.
func diagMsg(seq uint32, family uint8, addr netip.AddrPort, state uint8, uid, inode uint32) []byte {
	b := make([]byte, nlmsgHdrLen+diagMsgLen)
	ne := binary.NativeEndian
	ne.PutUint32(b, uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint32(b[8:], seq)
	m := b[nlmsgHdrLen:]
	m[0], m[1] = family, state
	binary.BigEndian.PutUint16(m[4:], addr.Port())
	a := addr.Addr().AsSlice()
	copy(m[8:], a)
	ne.PutUint32(m[64:], uid)
	ne.PutUint32(m[68:], inode)
	return b
}

func diagDone(seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+4)
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.NLMSG_DONE)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return b
}

func TestParseDiag(t *testing.T) {
	b := append(diagMsg(1, unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:8080"), 10, 0, 42),
		diagMsg(9, unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:1"), 10, 0, 1)...) // other request: skipped
	b = append(b, diagMsg(1, unix.AF_INET6, netip.MustParseAddrPort("[::]:53"), 7, 1000, 43)...)
	b = append(b, diagDone(1)...)
	socks, done, err := ParseDiag(b, 1, true)
	want := []InetSocket{
		{UDP: true, Local: netip.MustParseAddrPort("127.0.0.1:8080"), State: 10, Inode: 42},
		{UDP: true, Local: netip.MustParseAddrPort("[::]:53"), State: 7, UID: 1000, Inode: 43},
	}
	if err != nil || !done || !slices.Equal(socks, want) {
		t.Fatalf("%+v %v %v", socks, done, err)
	}
	for _, bad := range [][]byte{
		diagMsg(1, unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:1"), 10, 0, 1)[:40], // length past the end
		shortBody(),
	} {
		if _, _, err := ParseDiag(bad, 1, false); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}

// shortBody is a SOCK_DIAG_BY_FAMILY message with an 8-byte body.
func shortBody() []byte {
	b := make([]byte, nlmsgHdrLen+8)
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint32(b[8:], 1)
	return b
}

// TestHeldNetNS: the process's own namespace, even held open, is not
// reported. (Finding and entering pasta's namespace is tested against the
// real pasta in integration/ctlclient_test.go: it needs root.)
func TestHeldNetNS(t *testing.T) {
	own, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if got, err := HeldNetNS(os.Getpid()); err != nil || len(got) != 0 {
		t.Fatalf("own namespace reported: %v %v", got, err)
	}
}

// TestReadFDsLarge: a table large enough to be read by several workers
// gives every socket, as fstat sees it, and nothing else.
func TestReadFDsLarge(t *testing.T) {
	want := map[uint64]bool{}
	for range parallelLinks + 100 {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		want[st.Ino] = true
	}
	fds, err := ReadFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for ino := range want {
		if !fds.Sockets[ino] {
			t.Fatalf("socket inode %d missing from %d read", ino, len(fds.Sockets))
		}
	}
	if len(fds.Sockets) < len(want) || len(fds.Sockets) > len(want)+64 {
		t.Fatalf("%d socket inodes read, %d opened", len(fds.Sockets), len(want))
	}
}

// TestUnixPeer: the peer of one end of a socket pair is the other end,
// and a socket with no peer has none.
func TestUnixPeer(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var other unix.Stat_t
	if err := unix.Fstat(fds[1], &other); err != nil {
		t.Fatal(err)
	}
	if peer, err := UnixPeer(fds[0]); err != nil || peer != other.Ino {
		t.Fatalf("UnixPeer of a socket pair's end: %d, %v; want %d", peer, err, other.Ino)
	}
	lone, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lone)
	if peer, err := UnixPeer(lone); err != nil || peer != 0 {
		t.Fatalf("UnixPeer of an unconnected socket: %d, %v; want 0", peer, err)
	}
}
