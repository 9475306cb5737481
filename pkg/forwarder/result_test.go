package forwarder

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// startup is pasta's real start-up summary (passt 0.0~git20261002) on a
// host with IPv4 and IPv6, plus a search list.
const startup = `Can't run AVX2 build, using non-AVX2 version: No such file or directory
UNIX domain socket bound at /tmp/pp/att/pasta.sock
Configuration socket: /tmp/pp/att/pasta.sock
Template interface: eth0 (IPv4), eth0 (IPv6)
Namespace interface: ctr0
MAC:
    host: 9a:55:9a:55:9a:55
    NAT to host 127.0.0.1: 192.0.2.1
DHCP:
    assign: 192.0.2.2
    mask: 255.255.255.0
    router: 192.0.2.1
DNS:
    10.255.255.53
    192.0.2.1
DNS search list:
    example.org
    corp.example
    NAT to host ::1: fd00::1
NDP/DHCPv6:
    assign: fd00::2
    router: fd00::1
    our link-local: fe80::fc:ff:fe00:1
DNS:
    fd00::1
DNS search list:
    example.org
    corp.example
Inbound forwarding rules (HOST):
Outbound forwarding rules (SPLICE):
    TCP [*]%lo:1-32767  =>  1-32767  (best effort) (auto-scan)
`

func TestParseStartupDNS(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		ns, search []string
	}{
		{"full summary", startup, []string{"10.255.255.53", "192.0.2.1", "fd00::1"}, []string{"example.org", "corp.example"}},
		{"IPv4 only, the NAT line after DNS ends the list", "DNS:\n    10.0.0.53\n    NAT to host ::1: fd00::1\n", []string{"10.0.0.53"}, nil},
		{"nothing (pasta run with --quiet)", "", nil, nil},
		{"entries without a header are not DNS", "    192.0.2.9\n", nil, nil},
		{"a header ends a list", "DNS:\n    192.0.2.9\nNDP:\n    192.0.2.10\n", []string{"192.0.2.9"}, nil},
		{"a zone is kept", "DNS:\n    fe80::1%eth0\n", []string{"fe80::1%eth0"}, nil},
		{"CRLF", "DNS:\r\n    192.0.2.9\r\n", []string{"192.0.2.9"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseStartupDNS([]byte(tt.in))
			if !slices.Equal(got.Nameservers, tt.ns) || !slices.Equal(got.Search, tt.search) {
				t.Fatalf("got nameservers %q search %q, want %q %q", got.Nameservers, got.Search, tt.ns, tt.search)
			}
		})
	}
}

func TestReadNetworkNeedsNamespace(t *testing.T) {
	// Reading a real namespace needs root: integration/managed_test.go.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, OutFileName), []byte(startup), 0o600)
	if _, err := ReadNetwork(Config{Dir: dir}); err == nil {
		t.Fatal("ReadNetwork without a namespace: no error")
	}
	if _, err := ReadNetwork(Config{Dir: dir, NetNS: "/nonexistent/netns"}); err == nil {
		t.Fatal("ReadNetwork with a missing namespace: no error")
	}
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRoutes(t *testing.T) {
	gw4, gw6 := net.ParseIP("192.0.2.1"), net.ParseIP("fd00::1")
	routes := []netlink.Route{
		{Dst: mustCIDR(t, "192.0.2.0/24"), Family: unix.AF_INET},
		{Dst: mustCIDR(t, "198.51.100.0/24"), Gw: net.ParseIP("192.0.2.254"), Family: unix.AF_INET},
		{Dst: nil, Gw: gw4, Family: unix.AF_INET},
		{Dst: mustCIDR(t, "::/0"), Gw: gw6, Family: unix.AF_INET6},
		{Dst: nil, Gw: net.ParseIP("192.0.2.99"), Family: unix.AF_INET}, // a second default: not the gateway
	}
	g4, g6 := defaultGateways(routes)
	if !g4.Equal(gw4) || !g6.Equal(gw6) {
		t.Errorf("defaultGateways = %v, %v; want %v, %v", g4, g6, gw4, gw6)
	}
	if isDefault(routes[0]) || isDefault(routes[1]) || !isDefault(routes[2]) || !isDefault(routes[3]) {
		t.Error("isDefault wrong")
	}
	if d := routeDst(routes[2]); d.String() != "0.0.0.0/0" {
		t.Errorf("routeDst(IPv4 default) = %s", d.String())
	}
	if d := routeDst(netlink.Route{Gw: gw6, Family: unix.AF_INET6}); d.String() != "::/0" {
		t.Errorf("routeDst(IPv6 default) = %s", d.String())
	}
	if d := routeDst(routes[1]); d.String() != "198.51.100.0/24" {
		t.Errorf("routeDst = %s", d.String())
	}
	if g4, g6 := defaultGateways(nil); g4 != nil || g6 != nil {
		t.Errorf("no routes: %v %v", g4, g6)
	}
}
