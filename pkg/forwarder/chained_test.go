package forwarder

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func side(v4, v6 bool) *Side {
	s := &Side{IfName: "pasta0"}
	if v4 {
		s.Addr4, s.Gateway4 = netip.MustParsePrefix("169.254.100.2/30"), netip.MustParseAddr("169.254.100.1")
	}
	if v6 {
		s.Addr6, s.Gateway6 = netip.MustParsePrefix("fd41:e00e:44f8::2/64"), netip.MustParseAddr("fe80::1")
	}
	return s
}

func TestChainedArgs(t *testing.T) {
	inst := Paths("/d")
	head := []string{"-c", "/d/pasta.sock", "-P", "/d/pasta.pid", "-l", "/d/pasta.log"}
	closed := []string{"-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw", "--no-splice",
		"--no-dhcp", "--no-dhcpv6", "--no-ra", "-I", "pasta0"}
	v4 := []string{"-a", "169.254.100.2", "-n", "30", "-g", "169.254.100.1", "-o", "169.254.100.1"}
	v6 := []string{"-a", "fd41:e00e:44f8::2", "-g", "fe80::1", "-o", "fe80::1"}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name string
		cfg  Config
		euid int
		want []string
	}{
		{"dual-stack, root", Config{NetNS: "/run/netns/p", Side: side(true, true)}, 0,
			cat(head, []string{"--runas", "0"}, closed, v4, v6, []string{"--netns", "/run/netns/p"})},
		{"IPv4 only, rootless", Config{NetNS: "/run/netns/p", Side: side(true, false)}, 1000,
			cat(head, closed, v4, []string{"-4", "--netns", "/run/netns/p"})},
		{"IPv6 only, logging", Config{NetNS: "/run/netns/p", Side: side(false, true), Args: []string{"-d"}}, 1000,
			cat(head, closed, v6, []string{"-6", "-d", "--netns", "/run/netns/p"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := buildArgs(tc.cfg, inst, tc.euid)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
			if slices.Contains(got, "--config-net") {
				t.Error("a chained forwarder must not configure the pod's namespace")
			}
			if _, err := parseArgs(got[:len(got)-2]); err != nil {
				t.Errorf("pasta would not parse the arguments: %v", err)
			}
			if v, ok := argValue(got, "conf-path"); !ok || v != inst.Socket {
				t.Errorf("the arguments do not name the socket: %q", got)
			}
		})
	}
}

func TestCheckChainedArgs(t *testing.T) {
	for _, ok := range [][]string{nil, {"-d"}, {"--trace", "-q"}, {"--log-size", "1048576"}} {
		if err := CheckChainedArgs(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "--mtu", "1400"}, `pastaArgs[1] "--mtu": option -m (--mtu) would change the side interface`},
		{[]string{"-a", "10.0.0.2"}, `pastaArgs[0] "-a": option -a (--address) would change the side interface`},
		{[]string{"--config-net"}, `pastaArgs[0] "--config-net": option --config-net is set by the managed forwarder itself`},
		{[]string{"-t", "80"}, `pastaArgs[0] "-t": option -t (--tcp-ports) would forward ports`},
	} {
		err := CheckChainedArgs(tc.args)
		var ae *ArgError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCheckConfigChained(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"loopback mapped", Config{Side: side(true, false), LoopbackToHost: true}, "opens no path to the host's loopback"},
		{"no address", Config{Side: &Side{IfName: "pasta0"}}, "needs a side interface name and an address"},
		{"network option", Config{Side: side(true, false), Args: []string{"-g", "10.0.0.1"}}, "would change the side interface"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkConfig(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// The node's own address as the side's gateway would make pasta's
// outbound sockets bindable: refused. The test's namespace has 127.0.0.1.
func TestCheckOutbound(t *testing.T) {
	s := side(true, false)
	if err := CheckOutbound(s); err != nil {
		t.Fatalf("169.254.100.1: %v", err)
	}
	s.Gateway4 = netip.MustParseAddr("127.0.0.1")
	var oe *OutboundError
	if err := CheckOutbound(s); !errors.As(err, &oe) || oe.Addr != s.Gateway4 || oe.Interface != "lo" {
		t.Errorf("127.0.0.1: %v", err)
	}
}
