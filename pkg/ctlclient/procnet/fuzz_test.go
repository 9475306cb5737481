package procnet

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// FuzzParseUnix: no panic; what it accepts survives a round trip: the
// sockets parsed, written back as /proc/net/unix writes them, parse to
// the same sockets. Seeds: testdata/fuzz/FuzzParseUnix.
func FuzzParseUnix(f *testing.F) {
	f.Add([]byte(unixSample))
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, err := ParseUnix(b)
		if err != nil {
			return
		}
		again, err := ParseUnix(formatUnix(socks))
		if err != nil {
			t.Fatalf("ParseUnix of its own sockets written back: %v\n%q", err, formatUnix(socks))
		}
		if !slices.Equal(again, socks) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, socks)
		}
	})
}

// formatUnix writes sockets as the kernel writes /proc/net/unix
// (net/unix/af_unix.c, unix_seq_show): a header line, then "Num RefCount
// Protocol Flags Type St Inode" and, for a bound socket, a space and its
// path.
func formatUnix(socks []UnixSocket) []byte {
	var b bytes.Buffer
	b.WriteString("Num       RefCount Protocol Flags    Type St Inode Path\n")
	for i, s := range socks {
		fmt.Fprintf(&b, "%016x: %08X %08X %08X %04X %02X %5d", i, 2, 0, s.Flags, s.Type, s.State, s.Inode)
		if s.Path != "" {
			b.WriteString(" " + s.Path)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// FuzzParseInet: no panic; addresses are IPv4 or IPv6, never invalid.
// Seeds: testdata/fuzz/FuzzParseInet (lines of tcp, tcp6, udp6).
func FuzzParseInet(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, udp bool) {
		socks, err := ParseInet(b, udp)
		if err != nil {
			return
		}
		for _, s := range socks {
			if !s.Local.Addr().IsValid() || s.UDP != udp {
				t.Fatalf("socket %+v", s)
			}
		}
	})
}

// FuzzParseSocketLink: an inode comes back only from "socket:[digits]".
func FuzzParseSocketLink(f *testing.F) {
	for _, s := range []string{"socket:[12345]", "pipe:[1]", "socket:[]", "socket:[-1]", "/dev/null", "socket:[18446744073709551615]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, ok := ParseSocketLink(s); ok {
			digits := strings.TrimSuffix(strings.TrimPrefix(s, "socket:["), "]")
			if len(digits) != len(s)-len("socket:[]") || strings.Trim(digits, "0123456789") != "" {
				t.Fatalf("%q taken as a socket", s)
			}
		}
	})
}

// FuzzParseDiag: no panic on any netlink datagram; sockets have valid
// addresses. Seeds: testdata/fuzz/FuzzParseDiag.
func FuzzParseDiag(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, udp bool) {
		socks, _, err := ParseDiag(b, 1, udp)
		if err != nil {
			return
		}
		for _, s := range socks {
			if !s.Local.Addr().IsValid() || s.UDP != udp {
				t.Fatalf("socket %+v", s)
			}
		}
	})
}

// FuzzParseUnixPeer: no panic on any netlink datagram; a peer comes back
// only with a complete answer. Seeds: testdata/fuzz/FuzzParseUnixPeer
// (the kernel's answers for a socket pair and for an inode no socket
// has).
func FuzzParseUnixPeer(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		peer, done, err := ParseUnixPeer(b, 1)
		if peer != 0 && (!done || err != nil) {
			t.Fatalf("peer %d with done %v, error %v", peer, done, err)
		}
	})
}
