package attach

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// TestWhyNotListening binds a loopback port and asks why it and a free
// one did not listen.
func TestWhyNotListening(t *testing.T) {
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := uint16(held.Addr().(*net.TCPAddr).Port)
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := uint16(probe.Addr().(*net.TCPAddr).Port)
	probe.Close()

	rule := func(p uint16) wire.Rule {
		return wire.Rule{Listen: wire.To16(netip.MustParseAddr("127.0.0.1")), First: p, Last: p, To: 80, Proto: wire.ProtoTCP}
	}
	got := WhyNotListening([]ctlclient.RuleFailure{
		{PifRule: wire.PifRule{Pif: wire.PifHost, Rule: rule(taken)}, Ports: []uint16{taken}},
		{PifRule: wire.PifRule{Pif: wire.PifHost, Rule: rule(free)}, Ports: []uint16{free}},
		{PifRule: wire.PifRule{Pif: "SPLICE", Rule: rule(free)}, Ports: []uint16{free}},
	})
	want := fmt.Sprintf("already in use on the host by another program: 127.0.0.1:%d/TCP; free, not bound because pasta stops at the first port it cannot bind: 127.0.0.1:%d/TCP", taken, free)
	if got != want {
		t.Errorf("WhyNotListening:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(got, "SPLICE") || WhyNotListening(nil) != "" {
		t.Error("SPLICE ports or no failures are explained")
	}
}
