package netavark

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// TestExitCodes: every kind of the core exits with the number of the
// core's one table, CNI's code, except what cannot be named (1); the
// message is the core's words.
func TestExitCodes(t *testing.T) {
	want := map[attach.Kind]int{
		attach.KindBadConfig: 7, attach.KindUnreachable: 11, attach.KindNotAvailable: 50,
		attach.KindSafeFail: 100, attach.KindSocketFail: 101, attach.KindRollbackFail: 102,
		attach.KindMismatch: 103, attach.KindCheckFailed: 104, attach.KindIO: 5, attach.KindUnknown: 1,
	}
	for _, k := range attach.Kinds() {
		t.Run(k.String(), func(t *testing.T) {
			code, ok := want[k]
			if !ok {
				t.Fatalf("no exit status known for %v", k)
			}
			msg, got := render(&callError{What: "setup of container c", Err: &attach.Error{Kind: k, Msg: "m", Details: "d"}})
			if got != code || got != k.Code(1) {
				t.Errorf("%v exits %d, want %d", k, got, code)
			}
			if msg != "setup of container c: m; d" {
				t.Errorf("message %q, want the core's words after the call", msg)
			}
		})
	}
	// A failed setup whose undoing failed: the setup's outcome decides,
	// and the message says both.
	msg, code := render(&undoError{Err: &attach.Error{Kind: attach.KindSocketFail, Msg: "m", Details: "d"}, Undo: errors.New("stuck")})
	if code != 101 || msg != "m; d; and undoing the setup failed: passt-portmap failed; stuck" {
		t.Errorf("undo: exit %d, %q", code, msg)
	}
}

func TestConfiguredOf(t *testing.T) {
	_, p4, _ := net.ParseCIDR("10.0.2.15/24")
	p4.IP = net.ParseIP("10.0.2.15")
	_, p6, _ := net.ParseCIDR("fd00::2/64")
	p6.IP = net.ParseIP("fd00::2")
	n := &attach.Network{
		Interface: forwarder.Interface{Name: "eth0", MAC: "aa:bb:cc:dd:ee:ff"},
		Addresses: []forwarder.Address{{Prefix: *p4, Gateway: net.ParseIP("10.0.2.2")}, {Prefix: *p6, Gateway: net.ParseIP("fd00::1")}},
	}
	n.DNS.Nameservers = []string{"10.0.2.3", "not-an-ip"}
	n.DNS.Search = []string{"example.test"}
	c := configuredOf(n)
	if c.IfName != "eth0" || c.MAC != "aa:bb:cc:dd:ee:ff" || len(c.Addrs) != 2 ||
		c.Addrs[0] != netip.MustParsePrefix("10.0.2.15/24") || c.Addrs[1] != netip.MustParsePrefix("fd00::2/64") ||
		c.Gateway4 != netip.MustParseAddr("10.0.2.2") || c.Gateway6 != netip.MustParseAddr("fd00::1") ||
		len(c.DNS) != 1 || c.DNS[0] != netip.MustParseAddr("10.0.2.3") || c.Search[0] != "example.test" {
		t.Errorf("configuredOf = %+v", c)
	}
}
