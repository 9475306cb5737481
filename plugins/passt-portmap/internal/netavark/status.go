package netavark

import (
	"net/netip"
	"slices"
)

// Configured is what the managed pasta set up in the container's
// namespace, as read back from it.
type Configured struct {
	IfName string
	MAC    string
	// Addrs are the interface's addresses with their prefix length.
	Addrs []netip.Prefix
	// Gateway4 and Gateway6 are the default routes' gateways; the zero
	// Addr when the family has none.
	Gateway4, Gateway6 netip.Addr
	DNS                []netip.Addr // the nameservers pasta offers
	Search             []string     // the search list pasta offers
}

// StatusBlockOf renders what pasta configured as setup's answer: one
// interface with its MAC and addresses, each address with its family's
// gateway, and pasta's DNS. Lists are never null: netavark reads them as
// optional, Podman as lists.
func StatusBlockOf(c Configured) StatusBlock {
	sb := StatusBlock{
		DNSSearchDomains: append([]string{}, c.Search...),
		DNSServerIPs:     make([]string, 0, len(c.DNS)),
		Interfaces:       map[string]NetInterface{},
	}
	for _, a := range c.DNS {
		sb.DNSServerIPs = append(sb.DNSServerIPs, a.String())
	}
	ni := NetInterface{MACAddress: c.MAC, Subnets: make([]NetAddress, 0, len(c.Addrs))}
	addrs := slices.Clone(c.Addrs)
	// IPv4 first, as Podman lists them; the order within a family is kept.
	slices.SortStableFunc(addrs, func(a, b netip.Prefix) int {
		switch {
		case a.Addr().Is4() == b.Addr().Is4():
			return 0
		case a.Addr().Is4():
			return -1
		}
		return 1
	})
	for _, p := range addrs {
		na := NetAddress{IPNet: p.String()}
		gw := c.Gateway6
		if p.Addr().Is4() {
			gw = c.Gateway4
		}
		if gw.IsValid() {
			na.Gateway = gw.String()
		}
		ni.Subnets = append(ni.Subnets, na)
	}
	sb.Interfaces[c.IfName] = ni
	return sb
}
