package attach

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// maxProbes bounds the ports WhyNotListening binds to find out why.
const maxProbes = 32

// WhyNotListening says for each host port that did not listen whether
// another socket on the host holds it, by binding it as pasta would have
// (in the caller's network namespace, which must be the forwarder's).
// pasta stops binding at the first port that fails, so the ports after it
// did not listen although they are free: naming the one that is taken
// tells the user what to change. Call it once the forwarder no longer
// holds the ports (after a rollback, or after the managed pasta stopped),
// with the Failed rules of an Error; "" when there is nothing to say.
func WhyNotListening(fs []ctlclient.RuleFailure) string {
	var taken, free, other []string
	probes := 0
	for _, f := range fs {
		if f.Pif != wire.PifHost {
			continue // SPLICE listens inside the container's namespace
		}
		for _, p := range f.Ports {
			if probes == maxProbes {
				break
			}
			probes++
			name := fmt.Sprintf("%s/%s", hostAddr(f.Rule, p), f.Rule.Proto)
			switch err := bindProbe(f.Rule, p); {
			case err == nil:
				free = append(free, name)
			case errors.Is(err, syscall.EADDRINUSE):
				taken = append(taken, name)
			default:
				other = append(other, fmt.Sprintf("%s (%v)", name, err))
			}
		}
	}
	var parts []string
	if len(taken) > 0 {
		parts = append(parts, "already in use on the host by another program: "+strings.Join(taken, ", "))
	}
	if len(free) > 0 {
		parts = append(parts, "free, not bound because pasta stops at the first port it cannot bind: "+strings.Join(free, ", "))
	}
	if len(other) > 0 {
		parts = append(parts, "cannot be bound here: "+strings.Join(other, ", "))
	}
	return strings.Join(parts, "; ")
}

// hostAddr is where rule r listens for port p, for messages.
func hostAddr(r wire.Rule, p uint16) string {
	if r.Flags.Has(wire.FlagDualStack) {
		return fmt.Sprintf("*:%d", p)
	}
	return netip.AddrPortFrom(r.ListenAddr(), p).String()
}

// bindProbe binds port p as rule r listens (dual-stack, IPv6 only for
// "::", or the address) and closes it at once.
func bindProbe(r wire.Rule, p uint16) error {
	network, host := "tcp", r.ListenAddr().String()
	switch {
	case r.Flags.Has(wire.FlagDualStack):
		host = "" // Go listens dual-stack on the empty host
	case r.ListenAny():
		network = "tcp6" // IPV6_V6ONLY, as pasta's "::" without the flag
	}
	addr := net.JoinHostPort(host, fmt.Sprint(p))
	switch r.Proto {
	case wire.ProtoTCP:
		l, err := net.Listen(network, addr)
		if err != nil {
			return err
		}
		return l.Close()
	case wire.ProtoUDP:
		c, err := net.ListenPacket(strings.Replace(network, "tcp", "udp", 1), addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	return fmt.Errorf("protocol %s", r.Proto)
}
