package forwarder

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Side says how a chained forwarder joins a pod whose network an earlier
// plugin made: on a tap of its own (IfName) that it does not configure
// (no --config-net: the plugin does that, see package sidenet), knowing
// the pod's side addresses and its own. An invalid Addr4 or Addr6 means
// no side of that family: pasta then runs for the other family only.
//
// The command line is
//
//	pasta -c DIR/pasta.sock -P DIR/pasta.pid -l DIR/pasta.log [--runas 0] \
//	      -t none -u none -T none -U none --no-map-gw --no-splice \
//	      --no-dhcp --no-dhcpv6 --no-ra -I IFNAME \
//	      [-a ADDR4 -n BITS -g GW4 -o GW4] [-a ADDR6 -g GW6 -o GW6] [-4|-6] \
//	      [ARGS...] --netns NETNS
//
// Closed as in the managed mode: no inbound port until the plugin writes
// the pod's mappings, no outbound forwarding from the pod's loopback, no
// address mapped to the node's loopback. Closed besides: no DHCP, DHCPv6
// or router advertisement (the pod network configures the pod; an
// advertisement would put a default route into the pod's main table), no
// splice path (every rule has a target on the side). The outbound address
// (-o) is pasta's own side address, which the node does not have (Ensure
// checks): a socket pasta opens for a flow the pod starts cannot be bound
// to it, so a UDP datagram or an ICMP echo request that is not a reply
// goes nowhere. pasta only warns when it cannot bind an outbound TCP
// socket and connects all the same: TCP is closed in the pod, where the
// side's egress filter drops a segment that opens a connection.
type Side struct {
	IfName   string
	Addr4    netip.Prefix
	Gateway4 netip.Addr
	Addr6    netip.Prefix
	Gateway6 netip.Addr
}

// chainedArgs returns pasta's arguments (without the binary) for a
// chained forwarder; see Side.
func chainedArgs(cfg Config, inst Instance, euid int) []string {
	s := cfg.Side
	args := []string{"-c", inst.Socket, "-P", inst.PIDFile, "-l", inst.LogFile}
	if euid == 0 {
		args = append(args, "--runas", "0")
	}
	args = append(args, "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw", "--no-splice",
		"--no-dhcp", "--no-dhcpv6", "--no-ra", "-I", s.IfName)
	if s.Addr4.IsValid() {
		args = append(args, "-a", s.Addr4.Addr().String(), "-n", strconv.Itoa(s.Addr4.Bits()),
			"-g", s.Gateway4.String(), "-o", s.Gateway4.String())
	}
	if s.Addr6.IsValid() {
		args = append(args, "-a", s.Addr6.Addr().String(), "-g", s.Gateway6.String(), "-o", s.Gateway6.String())
	}
	switch {
	case !s.Addr6.IsValid():
		args = append(args, "-4")
	case !s.Addr4.IsValid():
		args = append(args, "-6")
	}
	args = append(args, cfg.Args...)
	return append(args, "--netns", cfg.NetNS)
}

// checkConfig checks cfg's arguments for its mode, and a chained side's
// outbound addresses.
func checkConfig(cfg Config) error {
	if cfg.Side == nil {
		if err := CheckArgs(cfg.Args); err != nil {
			return fmt.Errorf("forwarder: %w", err)
		}
		if err := CheckMapHostLoopback(cfg.MapHostLoopback); err != nil {
			return fmt.Errorf("forwarder: host loopback address: %w", err)
		}
		return nil
	}
	if err := CheckChainedArgs(cfg.Args); err != nil {
		return fmt.Errorf("forwarder: %w", err)
	}
	if len(cfg.MapHostLoopback) > 0 || cfg.LoopbackToHost {
		return errors.New("forwarder: a chained forwarder opens no path to the host's loopback")
	}
	if cfg.Side.IfName == "" || (!cfg.Side.Addr4.IsValid() && !cfg.Side.Addr6.IsValid()) {
		return errors.New("forwarder: a chained forwarder needs a side interface name and an address")
	}
	return CheckOutbound(cfg.Side)
}

// chainedOptions are the options a chained forwarder takes in
// Config.Args: its logging. Everything else of the managed list would
// change the side the plugin sets up, or the pod's network.
var chainedOptions = map[string]bool{"debug": true, "trace": true, "quiet": true, "log-size": true}

// CheckChainedArgs is CheckArgs for a chained forwarder: only the logging
// options (-d, --trace, -q, --log-size) are allowed.
func CheckChainedArgs(args []string) error {
	if err := CheckArgs(args); err != nil {
		return err
	}
	parsed, _ := parseArgs(args)
	for _, p := range parsed {
		if !chainedOptions[p.opt.long] {
			return &ArgError{Index: p.index, Arg: args[p.index], Option: p.opt.String(),
				Reason: "would change the side interface the plugin sets up in a chained pod: only -d, --trace, -q and --log-size are taken there"}
		}
	}
	return nil
}

// OutboundError is a side gateway address that the node itself has: the
// chained pasta could bind its outbound sockets to it, and flows a pod
// process starts would leave the node.
type OutboundError struct {
	Addr      netip.Addr
	Interface string
}

func (e *OutboundError) Error() string {
	return fmt.Sprintf("the node has the side gateway address %s on %s: pasta's outbound sockets, bound to it, would let a pod process reach the network through the side interface; pick another side network", e.Addr, e.Interface)
}

// CheckOutbound refuses a side whose gateway addresses (pasta's outbound
// addresses) are addresses of the caller's network namespace, the node's.
func CheckOutbound(s *Side) error {
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("forwarder: list the node's interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return fmt.Errorf("forwarder: addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			for _, gw := range []netip.Addr{s.Gateway4, s.Gateway6} {
				if gw.IsValid() && ip == gw {
					return &OutboundError{Addr: gw, Interface: ifc.Name}
				}
			}
		}
	}
	return nil
}
