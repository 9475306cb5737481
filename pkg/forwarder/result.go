package forwarder

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// fallbackTunnels are the devices the kernel creates in every network
// namespace when the matching tunnel module is loaded: not a sign that a
// plugin configured the namespace.
var fallbackTunnels = map[string]bool{
	"tunl0": true, "sit0": true, "ip6tnl0": true, "gre0": true, "gretap0": true,
	"erspan0": true, "ip6gre0": true, "ip_vti0": true, "ip6_vti0": true,
}

// nsHandle opens a netlink handle in the network namespace at path.
func nsHandle(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in network namespace %s: %w", path, err)
	}
	return h, nil
}

// ownLinks returns the namespace's links other than loopback and the
// kernel's fallback tunnel devices.
func ownLinks(h *netlink.Handle) ([]netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var own []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || fallbackTunnels[a.Name] {
			continue
		}
		own = append(own, l)
	}
	return own, nil
}

// Attached reports whether the network namespace at netnsPath already has
// an interface other than loopback (and the kernel's fallback tunnel
// devices), i.e. another plugin configured it.
func Attached(netnsPath string) (bool, error) {
	h, err := nsHandle(netnsPath)
	if err != nil {
		return false, fmt.Errorf("forwarder: %w", err)
	}
	defer h.Close()
	own, err := ownLinks(h)
	if err != nil {
		return false, fmt.Errorf("forwarder: network namespace %s: %w", netnsPath, err)
	}
	return len(own) > 0, nil
}

// ReadNetwork describes what pasta configured in the namespace cfg.NetNS,
// in no runtime's format (each front end renders it: a CNI result, a
// netavark StatusBlock). It is read back through netlink inside the
// namespace:
//   - Interface: the interface pasta made (named by -I in cfg.Args, else
//     cfg.IfName, else the only interface other than loopback), with its
//     MAC, MTU and Sandbox = cfg.NetNS.
//   - Addresses: its global IPv4 and IPv6 addresses with their prefix
//     length (link-local ones left out), each with the gateway of the
//     default route of its family, if any.
//   - Routes: the routes on that interface in the main table that have a
//     gateway (the default routes pasta copies from the host, and any
//     other route with a next hop), with their metric as Priority.
//   - DNS: the nameservers and search list pasta itself announced when it
//     started (its "DNS:" and "DNS search list:" lines, kept in OutFile):
//     the host's resolv.conf, a loopback resolver replaced by
//     DNSForwardAddr (where pasta answers and forwards to it), or what
//     --dns/--search in cfg.Args said. pasta does not write resolv.conf
//     into the namespace; the runtime does, from this. Empty when that
//     record is missing (pasta started by someone else, or run with
//     --quiet).
func ReadNetwork(cfg Config) (*Network, error) {
	if cfg.NetNS == "" {
		return nil, errors.New("forwarder: no network namespace path")
	}
	h, err := nsHandle(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	defer h.Close()
	link, err := pastaLink(h, nsIfName(cfg))
	if err != nil {
		return nil, fmt.Errorf("forwarder: network namespace %s: %w", cfg.NetNS, err)
	}
	a := link.Attrs()
	n := &Network{Interface: Interface{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU, Sandbox: cfg.NetNS}}

	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("forwarder: network namespace %s: list routes of %s: %w", cfg.NetNS, a.Name, err)
	}
	gw4, gw6 := defaultGateways(routes)
	for _, r := range routes {
		if r.Gw == nil || (r.Table != 0 && r.Table != unix.RT_TABLE_MAIN) {
			continue
		}
		n.Routes = append(n.Routes, Route{Dst: routeDst(r), Gateway: r.Gw, Priority: r.Priority})
	}

	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("forwarder: network namespace %s: list addresses of %s: %w", cfg.NetNS, a.Name, err)
	}
	for _, ad := range addrs {
		ip := ad.IPNet.IP
		if ip.IsLinkLocalUnicast() || ip.IsLoopback() || ad.Scope == unix.RT_SCOPE_HOST {
			continue
		}
		gw := gw6
		if ip.To4() != nil {
			gw = gw4
		}
		n.Addresses = append(n.Addresses, Address{Prefix: *ad.IPNet, Gateway: gw})
	}

	if cfg.Dir != "" {
		b, err := readOutput(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("forwarder: read pasta's start-up output: %w", err)
		}
		n.DNS = parseStartupDNS(b)
	}
	return n, nil
}

// pastaLink finds the interface pasta made: by name, or the only link
// other than loopback.
func pastaLink(h *netlink.Handle, name string) (netlink.Link, error) {
	if name != "" {
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", name, err)
		}
		return l, nil
	}
	own, err := ownLinks(h)
	if err != nil {
		return nil, err
	}
	switch len(own) {
	case 0:
		return nil, errors.New("no interface but loopback")
	case 1:
		return own[0], nil
	}
	names := make([]string, len(own))
	for i, l := range own {
		names[i] = l.Attrs().Name
	}
	return nil, fmt.Errorf("several interfaces (%s) and no interface name to choose", strings.Join(names, ", "))
}

// isDefault reports whether r is a default route.
func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// routeDst returns r's destination, 0.0.0.0/0 or ::/0 for a default
// route.
func routeDst(r netlink.Route) net.IPNet {
	if r.Dst != nil {
		return *r.Dst
	}
	if r.Family == unix.AF_INET6 || (r.Gw != nil && r.Gw.To4() == nil) {
		return net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
}

// defaultGateways returns the gateways of the first IPv4 and IPv6 default
// routes.
func defaultGateways(routes []netlink.Route) (gw4, gw6 net.IP) {
	for _, r := range routes {
		if r.Gw == nil || !isDefault(r) {
			continue
		}
		if r.Gw.To4() != nil {
			if gw4 == nil {
				gw4 = r.Gw
			}
		} else if gw6 == nil {
			gw6 = r.Gw
		}
	}
	return gw4, gw6
}

// parseStartupDNS extracts the nameservers and search domains from pasta's
// start-up summary on standard error: a line "DNS:" or "DNS search list:"
// at the start of a line, followed by entries indented with spaces. An
// entry under "DNS:" that is not an address ends the list (pasta prints
// other details there, e.g. "NAT to host ::1: ..."). Duplicates (pasta
// prints the search list once per IP version) are dropped.
func parseStartupDNS(out []byte) DNS {
	var dns DNS
	section := ""
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, "\r")
		indented := strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")
		entry := strings.TrimSpace(line)
		if !indented {
			switch entry {
			case "DNS:":
				section = "dns"
			case "DNS search list:":
				section = "search"
			default:
				section = ""
			}
			continue
		}
		switch section {
		case "dns":
			addr, err := netip.ParseAddr(entry)
			if err != nil {
				section = ""
				continue
			}
			if s := addr.String(); !slices.Contains(dns.Nameservers, s) {
				dns.Nameservers = append(dns.Nameservers, s)
			}
		case "search":
			if entry == "" || strings.ContainsAny(entry, " \t:") {
				section = ""
				continue
			}
			if !slices.Contains(dns.Search, entry) {
				dns.Search = append(dns.Search, entry)
			}
		}
	}
	return dns
}

// readOutput reads pasta's start-up output in the attachment directory
// dir (see package safefs); nothing when there is none.
func readOutput(dir string) ([]byte, error) {
	inst, err := instanceFor(dir)
	if err != nil {
		return nil, err
	}
	d, err := openDir(inst.Dir, false)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := d.ReadFile(OutFileName, maxOutput)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
