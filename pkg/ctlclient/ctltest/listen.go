package ctltest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

var (
	netipAny  = netip.IPv6Unspecified()
	loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
)

// ListenAddrs returns the loopback addresses on which a Server binds the
// ports of r (the real forwarder binds r's own address): both 127.0.0.1
// and ::1 for a dual-stack rule; a loopback address as it is; 127.0.0.1
// for any other IPv4 address; ::1 for any other IPv6 address. A client
// verifying listeners against a Server must look there.
func ListenAddrs(r wire.Rule) []netip.Addr {
	if r.Flags.Has(wire.FlagDualStack) {
		return []netip.Addr{loopback4, netip.IPv6Loopback()}
	}
	a := r.ListenAddr()
	switch {
	case a.IsLoopback():
		return []netip.Addr{a}
	case a.Is4():
		return []netip.Addr{loopback4}
	}
	return []netip.Addr{netip.IPv6Loopback()}
}

// ListenAddrs is the method form of the package function, shaped to be
// handed to a client as its listen-address hook.
func (s *Server) ListenAddrs(pif string, r wire.Rule) []netip.Addr { return ListenAddrs(r) }

// switchLocked makes pending the active tables: closes every listening
// socket, then binds the new HOST rules in order, stopping at the first
// rule that fails, like the forwarder's "close and re-open".
func (s *Server) switchLocked(pending wire.Tables) {
	s.closeSocksLocked()
	s.tables = pending
	s.stats.Updates++
	for _, t := range s.tables {
		if t.Name() != wire.PifHost {
			continue
		}
		for i, r := range t.Rules {
			if r.Flags.Has(wire.FlagScan) {
				continue
			}
			if err := s.bindLocked(r); err != nil {
				s.stats.LastErr = fmt.Errorf("pif %s rule %d (%s): %w", t.Name(), i, r, err)
				s.logf("error switching to new forwarding rules, later rules stay unbound: %v", s.stats.LastErr)
				return
			}
		}
	}
}

// bindLocked binds every port of r on its loopback addresses; sockets bound
// before a failure stay open, as on the forwarder. A weak rule skips the
// ports that fail and fails only when none binds.
func (s *Server) bindLocked(r wire.Rule) error {
	var last error
	bound := false
	for p := int(r.First); p <= int(r.Last); p++ {
		if err := s.bindPortLocked(r, uint16(p)); err != nil {
			if !r.Flags.Has(wire.FlagWeak) {
				return err
			}
			last = err
			continue
		}
		bound = true
	}
	if !bound {
		return fmt.Errorf("all listens failed: %w", last)
	}
	return nil
}

func (s *Server) bindPortLocked(r wire.Rule, port uint16) error {
	for _, a := range ListenAddrs(r) {
		ap := netip.AddrPortFrom(a, port)
		if s.failPorts[port] {
			return fmt.Errorf("listen failed for port %s: %w", ap, syscall.EADDRINUSE)
		}
		c, err := listen(r.Proto, ap)
		if err != nil {
			return fmt.Errorf("listen failed for port %s: %w", ap, err)
		}
		s.socks = append(s.socks, c)
	}
	return nil
}

func listen(proto wire.Proto, ap netip.AddrPort) (io.Closer, error) {
	network := "4"
	if ap.Addr().Is6() {
		network = "6"
	}
	if proto == wire.ProtoUDP {
		return net.ListenUDP("udp"+network, net.UDPAddrFromAddrPort(ap))
	}
	return net.ListenTCP("tcp"+network, net.TCPAddrFromAddrPort(ap))
}

func (s *Server) closeSocksLocked() {
	for _, c := range s.socks {
		c.Close()
	}
	s.socks = nil
}
