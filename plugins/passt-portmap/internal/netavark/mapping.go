package netavark

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Mapping is a validated port mapping: Range ports from HostPort and
// ContainerPort on, for each of Protocols.
type Mapping struct {
	// HostIP is the listening address; the zero Addr is every address.
	HostIP        netip.Addr
	HostPort      uint16
	ContainerPort uint16
	Range         uint16   // at least 1
	Protocols     []string // "tcp" and/or "udp", each once, in the order given
}

// Mappings validates port_mappings. netavark passes them on as Podman
// gave them, without checks of its own ("protocol":"bogus" and "range":0
// reach the plugin), so each entry is checked here and an error names it:
// ports 1..65535 on both sides and the range's last port too, protocols
// tcp and udp (sctp is not forwarded by pasta), a host_ip that is an
// address without a zone.
func Mappings(pms []PortMapping) ([]Mapping, error) {
	out := make([]Mapping, 0, len(pms))
	for i, pm := range pms {
		m, err := mapping(pm)
		if err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("port_mappings[%d]", i), Err: err}
		}
		out = append(out, m)
	}
	return out, nil
}

func mapping(pm PortMapping) (Mapping, error) {
	var m Mapping
	n := pm.Range
	switch {
	case n == 0:
		n = 1 // as netavark's own drivers read it
	case n < 0 || n > 65535:
		return m, fmt.Errorf("range %d: want 1 to 65535 ports", pm.Range)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"host_port", pm.HostPort}, {"container_port", pm.ContainerPort}} {
		if p.port < 1 || p.port > 65535 {
			return m, fmt.Errorf("%s %d: want a port from 1 to 65535", p.name, p.port)
		}
		if last := p.port + n - 1; last > 65535 {
			return m, fmt.Errorf("%s %d with range %d: the last port would be %d, past 65535", p.name, p.port, n, last)
		}
	}
	m.HostPort, m.ContainerPort, m.Range = uint16(pm.HostPort), uint16(pm.ContainerPort), uint16(n)

	protos := strings.Split(pm.Protocol, ",")
	for _, p := range protos {
		p = strings.ToLower(strings.TrimSpace(p))
		switch p {
		case "":
			if len(protos) > 1 {
				return m, fmt.Errorf("protocol %q: an empty name in the list", pm.Protocol)
			}
			p = "tcp" // unset: TCP, as the API says
		case "tcp", "udp":
		case "sctp":
			return m, fmt.Errorf("protocol %q: sctp cannot be forwarded by pasta (tcp and udp can)", pm.Protocol)
		default:
			return m, fmt.Errorf("protocol %q: %q is not a protocol (want tcp, udp or both, as \"tcp,udp\")", pm.Protocol, p)
		}
		if !slices.Contains(m.Protocols, p) {
			m.Protocols = append(m.Protocols, p)
		}
	}

	if pm.HostIP != "" {
		a, err := netip.ParseAddr(pm.HostIP)
		if err != nil {
			return m, fmt.Errorf("host_ip %q: not an IP address", pm.HostIP)
		}
		if a.Zone() != "" {
			return m, fmt.Errorf("host_ip %q: a zone is not allowed", pm.HostIP)
		}
		if a.IsMulticast() {
			return m, fmt.Errorf("host_ip %q: a multicast address cannot listen", pm.HostIP)
		}
		m.HostIP = a
	}
	return m, nil
}
