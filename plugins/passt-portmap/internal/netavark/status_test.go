package netavark

import (
	"encoding/json"
	"net/netip"
	"testing"
)

func TestStatusBlockOf(t *testing.T) {
	tests := []struct {
		name string
		in   Configured
		want string
	}{
		{"dual stack", Configured{IfName: "eth0", MAC: "aa:bb:cc:dd:ee:01",
			Addrs:    []netip.Prefix{netip.MustParsePrefix("2001:db8::5/64"), netip.MustParsePrefix("10.99.0.5/24")},
			Gateway4: netip.MustParseAddr("10.99.0.1"), Gateway6: netip.MustParseAddr("fe80::1"),
			DNS: []netip.Addr{netip.MustParseAddr("10.99.0.1")}, Search: []string{"example.test"}},
			`{"dns_search_domains":["example.test"],"dns_server_ips":["10.99.0.1"],"interfaces":{"eth0":{"mac_address":"aa:bb:cc:dd:ee:01","subnets":[{"gateway":"10.99.0.1","ipnet":"10.99.0.5/24"},{"gateway":"fe80::1","ipnet":"2001:db8::5/64"}]}}}`},
		{"no gateway, no DNS: empty lists, not null", Configured{IfName: "eth0", MAC: "aa:bb:cc:dd:ee:02",
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.2.15/24")}},
			`{"dns_search_domains":[],"dns_server_ips":[],"interfaces":{"eth0":{"mac_address":"aa:bb:cc:dd:ee:02","subnets":[{"ipnet":"10.0.2.15/24"}]}}}`},
		{"no address", Configured{IfName: "net1", MAC: "aa:bb:cc:dd:ee:03"},
			`{"dns_search_domains":[],"dns_server_ips":[],"interfaces":{"net1":{"mac_address":"aa:bb:cc:dd:ee:03","subnets":[]}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(StatusBlockOf(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("StatusBlockOf:\n got %s\nwant %s", b, tt.want)
			}
		})
	}
}
