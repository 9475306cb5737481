package sidenet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ClashError is a side that would collide with what the pod's network
// made: the namespace already has the interface, the table is in use, or
// an address is taken. Nothing was changed.
type ClashError struct {
	NetNS   string
	Clashes []Clash
}

// Clash is one thing of the side that the pod's namespace already uses.
type Clash struct {
	What   Part
	Detail string
}

// Part is the part of a side that clashes.
type Part int

// The parts of a side.
const (
	PartInterface Part = iota // its interface name
	PartTable                 // its routing table
	PartNetwork               // its addresses
)

// Parts returns the parts that clash, each once, in Part order.
func (e *ClashError) Parts() []Part {
	seen := map[Part]bool{}
	var out []Part
	for _, p := range []Part{PartInterface, PartTable, PartNetwork} {
		for _, c := range e.Clashes {
			if c.What == p && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

func (e *ClashError) Error() string {
	var parts []string
	for _, c := range e.Clashes {
		parts = append(parts, c.Detail)
	}
	return fmt.Sprintf("the side interface would clash with the pod's network in %s: %s", e.NetNS, strings.Join(parts, "; "))
}

// Free checks, before pasta makes the tap, that the side would clash with
// nothing in the pod's namespace: no interface has its name (but a tap
// when ownTap says the attachment's own pasta made the side in this
// namespace before: the tap of one that just died lingers a moment), its routing
// table is empty and no rule but the side's own (left by a pasta that
// died) looks it up, and no interface has one of the side's addresses or
// an IPv4 address in the side's network (whose local and broadcast
// entries the side adds). A clash is a *ClashError naming every one found.
func Free(s Side, ownTap bool) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var clashes []Clash
	err := s.do(func() error {
		own := 0 // the index of our own tap, whose routes and addresses are the side's
		if l, err := netlink.LinkByName(s.IfName); err == nil {
			if _, tap := l.(*netlink.Tuntap); tap && ownTap {
				own = l.Attrs().Index
			} else {
				clashes = append(clashes, Clash{PartInterface, fmt.Sprintf("interface %s already exists (%s)", s.IfName, l.Type())})
			}
		} else if !isNotFound(err) {
			return fmt.Errorf("look up interface %s: %w", s.IfName, err)
		}
		c, err := tableUsers(s, own)
		if err != nil {
			return err
		}
		clashes = append(clashes, c...)
		c, err = addressClashes(s, own)
		clashes = append(clashes, c...)
		return err
	})
	if err != nil {
		return err
	}
	if len(clashes) > 0 {
		return &ClashError{NetNS: s.NetNS, Clashes: clashes}
	}
	return nil
}

// tableUsers names the routes of the side's table that do not go through
// the link with index own (0: any route), and the rules that look the
// table up but are not the side's (the side's own rules, left by a pasta
// that died, are taken over).
func tableUsers(s Side, own int) ([]Clash, error) {
	var out []Clash
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: s.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d: %w", s.Table, err)
		}
		for _, r := range routes {
			if own == 0 || r.LinkIndex != own {
				out = append(out, Clash{PartTable, fmt.Sprintf("routing table %d holds a route of the pod's network: %s", s.Table, routeString(r))})
			}
		}
		rules, err := netlink.RuleListFiltered(fam, &netlink.Rule{Table: s.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list rules: %w", err)
		}
		for _, r := range rules {
			if !s.isOurRule(r) {
				out = append(out, Clash{PartTable, fmt.Sprintf("rule %q already looks up table %d", r.String(), s.Table)})
			}
		}
	}
	return out, nil
}

// addressClashes names addresses of links other than own (0: every link)
// that are the side's, its gateway's, or in the side's network (the IPv4
// one's local and broadcast entries would shadow them; the IPv6 one's
// prefix would stand for two links).
func addressClashes(s Side, own int) ([]Clash, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []Clash
	for _, l := range links {
		if l.Attrs().Index == own {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			for _, f := range s.families() {
				switch {
				case ip == f.addr.Addr() || ip == f.gw:
					out = append(out, Clash{PartNetwork, fmt.Sprintf("interface %s has the side's address %s", l.Attrs().Name, ip)})
				case overlaps(f.addr.Masked(), a.IPNet):
					out = append(out, Clash{PartNetwork, fmt.Sprintf("interface %s has %s, in the side's network %s", l.Attrs().Name, a.IPNet, f.addr.Masked())})
				}
			}
		}
	}
	return out, nil
}

func overlaps(p netip.Prefix, n *net.IPNet) bool {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return false
	}
	ones, bits := n.Mask.Size()
	a = a.Unmap()
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	q := netip.PrefixFrom(a, ones)
	return q.IsValid() && q.Addr().Is4() == p.Addr().Is4() && p.Overlaps(q)
}

// Setup configures the side interface pasta made and its routing, and
// installs the egress filter. It is idempotent: what is already there is
// kept, what is missing is added, so a repeated ADD converges. A table
// holding routes that are not the side's, a rule looking it up that is
// not the side's, or another interface with a side address is a
// *ClashError, found before anything is changed.
func Setup(s Side) error {
	if err := s.Validate(); err != nil {
		return err
	}
	return s.do(func() error {
		link, err := waitTap(s.IfName)
		if err != nil {
			return err
		}
		idx := link.Attrs().Index
		users, err := tableUsers(s, idx)
		if err != nil {
			return err
		}
		clashes, err := addressClashes(s, idx)
		if err != nil {
			return err
		}
		if c := append(users, clashes...); len(c) > 0 {
			return &ClashError{NetNS: s.NetNS, Clashes: c}
		}
		return configure(s, link)
	})
}

// foreverLft is an address lifetime without end (INFINITY_LIFE_TIME).
const foreverLft = 0xffffffff

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h): the
// kernel makes no IPv6 link-local address for the link.
const addrGenModeNone = 1

// configure brings link up with the side's addresses, routes, rules and
// filter.
func configure(s Side, link netlink.Link) error {
	// Before the link is up: no automatic IPv6 link-local address, whose
	// prefix route would land in the main table.
	if err := netlink.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil && s.Addr6.IsValid() {
		return fmt.Errorf("turn off IPv6 address generation on %s: %w", s.IfName, err)
	}
	if link.Attrs().MTU != MTU {
		if err := netlink.LinkSetMTU(link, MTU); err != nil {
			return fmt.Errorf("set the MTU of %s: %w", s.IfName, err)
		}
	}
	for _, f := range s.families() {
		a := &netlink.Addr{IPNet: f.ipNet(), Flags: unix.IFA_F_NOPREFIXROUTE}
		if f.nl == unix.AF_INET6 {
			// Valid for ever, preferred never: deprecated, so that the
			// kernel does not choose it as the source of the pod's own
			// connections.
			a.Flags |= unix.IFA_F_NODAD
			a.ValidLft, a.PreferedLft = foreverLft, 0
		}
		err := netlink.AddrAdd(link, a)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", f.addr, s.IfName, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", s.IfName, err)
	}
	for _, f := range s.families() {
		if err := netlink.RouteReplace(s.route(f, link.Attrs().Index)); err != nil {
			return fmt.Errorf("add the default route via %s dev %s to table %d: %w", f.gw, s.IfName, s.Table, err)
		}
		if err := s.addRule(f); err != nil {
			return err
		}
	}
	return installFilter(link)
}

// route is the side's default route of family f in its table.
func (s *Side) route(f family, linkIndex int) *netlink.Route {
	r := &netlink.Route{LinkIndex: linkIndex, Gw: f.gw.AsSlice(), Table: s.Table, Family: f.nl}
	if f.nl == unix.AF_INET {
		// No prefix route for the side's network: the gateway is on the
		// link by decree.
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	return r
}

// rule is the side's rule of family f.
func (s *Side) rule(f family) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = f.nl
	r.Priority = s.Priority
	r.Table = s.Table
	r.Src = f.hostNet()
	return r
}

// isOurRule reports whether r is exactly one of the side's rules: its
// priority, its table, one of its source addresses, and no other selector.
func (s *Side) isOurRule(r netlink.Rule) bool {
	if r.Priority != s.Priority || r.Table != s.Table || r.Src == nil || r.Dst != nil || r.Invert ||
		r.IifName != "" || r.OifName != "" || r.Mark != 0 || r.Tos != 0 || r.IPProto != 0 ||
		r.Dport != nil || r.Sport != nil || r.UIDRange != nil || r.Goto > 0 {
		return false
	}
	for _, f := range s.families() {
		if r.Src.String() == f.hostNet().String() {
			return true
		}
	}
	return false
}

// addRule adds the rule of family f unless it is there.
func (s *Side) addRule(f family) error {
	rules, err := netlink.RuleListFiltered(f.nl, s.rule(f), netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PRIORITY|netlink.RT_FILTER_SRC)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	for _, r := range rules {
		if s.isOurRule(r) {
			return nil
		}
	}
	if err := netlink.RuleAdd(s.rule(f)); err != nil {
		return fmt.Errorf("add rule from %s lookup %d: %w", f.addr.Addr(), s.Table, err)
	}
	return nil
}

// tapWait bounds how long Setup waits for pasta's tap to appear: pasta
// makes it before it daemonizes, which the forwarder's start waits for,
// so this is a margin.
const tapWait = time.Second

// waitTap is tapLink, polling for up to tapWait while the link is missing.
func waitTap(name string) (netlink.Link, error) {
	deadline := time.Now().Add(tapWait)
	for {
		link, err := tapLink(name)
		if err == nil || !isNotFound(err) || time.Now().After(deadline) {
			return link, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tapLink returns the interface name, which must be a tap device (pasta's).
func tapLink(name string) (netlink.Link, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("side interface %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Tuntap); !ok {
		return nil, fmt.Errorf("side interface %s is a %s device, not pasta's tap", name, link.Type())
	}
	return link, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// routeString renders a route in ip-route's words.
func routeString(r netlink.Route) string {
	dst := "default"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	s := dst
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
		s += " dev " + l.Attrs().Name
	}
	return s
}
