package netavark

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

func TestOutcomeExitCodes(t *testing.T) {
	tests := []struct {
		kind attach.Kind
		code int
	}{
		{attach.KindBadConfig, 7}, {attach.KindUnreachable, 11}, {attach.KindNotAvailable, 50},
		{attach.KindSafeFail, 100}, {attach.KindSocketFail, 101}, {attach.KindRollbackFail, 102},
		{attach.KindMismatch, 103}, {attach.KindCheckFailed, 104}, {attach.KindIO, 5}, {attach.KindUnknown, 1},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			err := outcome(&attach.Error{Kind: tt.kind, Msg: "m", Details: "d"})
			var c Coder
			if !errors.As(err, &c) || c.ExitCode() != tt.code {
				t.Errorf("outcome of %v = %v, want exit %d", tt.kind, err, tt.code)
			}
			if err.Error() != "m; d" {
				t.Errorf("message %q, want the core's words", err)
			}
		})
	}
	if outcome(nil) != nil {
		t.Error("outcome(nil) is not nil")
	}
	fe := fieldErr("x", "bad")
	if outcome(fe) != fe {
		t.Error("a FieldError is not passed through")
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
