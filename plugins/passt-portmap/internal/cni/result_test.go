package cni

import (
	"encoding/json"
	"net"
	"reflect"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// TestCNIResult: the managed forwarder's network as a CNI result: one
// interface in the container, every address on it with its gateway, the
// routes and the DNS.
func TestCNIResult(t *testing.T) {
	_, v4, _ := net.ParseCIDR("192.0.2.5/24")
	v4.IP = net.ParseIP("192.0.2.5").To4()
	_, v6, _ := net.ParseCIDR("2001:db8::5/64")
	v6.IP = net.ParseIP("2001:db8::5")
	_, def4, _ := net.ParseCIDR("0.0.0.0/0")
	n := &attach.Network{
		Interface: forwarder.Interface{Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 65520, Sandbox: "/run/netns/x"},
		Addresses: []forwarder.Address{{Prefix: *v4, Gateway: net.ParseIP("192.0.2.1")}, {Prefix: *v6}},
		Routes:    []forwarder.Route{{Dst: *def4, Gateway: net.ParseIP("192.0.2.1"), Priority: 100}},
		DNS:       forwarder.DNS{Nameservers: []string{"192.0.2.1"}, Search: []string{"example.org"}},
	}
	b, err := json.Marshal(cniResult(n))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","mtu":65520,"sandbox":"/run/netns/x"}],` +
		`"ips":[{"interface":0,"address":"192.0.2.5/24","gateway":"192.0.2.1"},{"interface":0,"address":"2001:db8::5/64"}],` +
		`"routes":[{"dst":"0.0.0.0/0","gw":"192.0.2.1","priority":100}],"dns":{"nameservers":["192.0.2.1"],"search":["example.org"]}}`
	var got, exp any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
