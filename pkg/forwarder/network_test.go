package forwarder

import (
	"encoding/json"
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// The neutral form loses nothing of the CNI result ReadResult makes.
func TestNetworkRoundTrip(t *testing.T) {
	_, v4, _ := net.ParseCIDR("192.0.2.5/24")
	v4.IP = net.ParseIP("192.0.2.5").To4()
	_, v6, _ := net.ParseCIDR("2001:db8::5/64")
	_, def4, _ := net.ParseCIDR("0.0.0.0/0")
	in := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: "eth0", Mac: "02:00:00:00:00:01", Mtu: 65520, Sandbox: "/run/netns/x"}},
		IPs: []*current.IPConfig{{Interface: current.Int(0), Address: *v4, Gateway: net.ParseIP("192.0.2.1")},
			{Interface: current.Int(0), Address: *v6}},
		Routes: []*types.Route{{Dst: *def4, GW: net.ParseIP("192.0.2.1"), Priority: 100}},
		DNS:    types.DNS{Nameservers: []string{"192.0.2.1"}, Search: []string{"example.org"}},
	}
	out := networkOf(in).CNIResult()
	a, _ := json.Marshal(in)
	b, _ := json.Marshal(out)
	if string(a) != string(b) {
		t.Errorf("round trip:\n in %s\nout %s", a, b)
	}
}
