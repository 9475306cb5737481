package netavark

import (
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// mappings are port_mappings as the core takes them, decoded and not yet
// checked: a mapping's protocols are its protocol field split at the
// commas ("tcp,udp"), each without the spaces around it; none is TCP. A
// range of 0 is one port, as netavark's own drivers read it (and the
// core). netavark passes the mappings on as Podman gave them, without
// checks of its own ("protocol":"bogus" and "range":0 reach the plugin):
// the core checks them (attach.CheckMappings), naming each by its place
// in port_mappings.
func mappings(pms []PortMapping) []attach.Mapping {
	out := make([]attach.Mapping, 0, len(pms))
	for _, pm := range pms {
		m := attach.Mapping{HostIP: pm.HostIP, HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Range: pm.Range}
		if pm.Protocol != "" {
			for _, p := range strings.Split(pm.Protocol, ",") {
				m.Protocols = append(m.Protocols, strings.TrimSpace(p))
			}
		}
		out = append(out, m)
	}
	return out
}
