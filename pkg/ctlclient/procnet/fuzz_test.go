package procnet

import (
	"strings"
	"testing"
)

// FuzzParseUnix: no panic; every socket parsed has fields that re-parse.
// Seeds: testdata/fuzz/FuzzParseUnix.
func FuzzParseUnix(f *testing.F) {
	f.Add([]byte(unixSample))
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, err := ParseUnix(b)
		if err != nil {
			return
		}
		for _, s := range socks {
			if s.Listening() != (s.Flags&unixAcceptCon != 0) {
				t.Fatal("Listening")
			}
		}
	})
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
