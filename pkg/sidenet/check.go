package sidenet

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Check reports what of the side is missing in the pod's namespace: the
// tap (up), its addresses, the default routes of its table, the rules that
// select the table, and the egress filter. No reasons means the side is
// whole. A namespace that is gone is a reason too.
func Check(s Side) ([]string, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var reasons []string
	err := s.do(func() error {
		link, err := tapLink(s.IfName)
		if err != nil {
			reasons = append(reasons, err.Error())
			return nil
		}
		if link.Attrs().Flags&1 == 0 { // net.FlagUp
			reasons = append(reasons, fmt.Sprintf("side interface %s is down", s.IfName))
		}
		r, err := missing(s, link)
		reasons = append(reasons, r...)
		return err
	})
	if errors.Is(err, ErrGone) {
		return []string{err.Error()}, nil
	}
	return reasons, err
}

// missing names the addresses, routes, rules and filter of the side that
// link and the namespace lack.
func missing(s Side, link netlink.Link) ([]string, error) {
	var out []string
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the addresses of %s: %w", s.IfName, err)
	}
	idx := link.Attrs().Index
	for _, f := range s.families() {
		if !hasAddr(addrs, f.addr) {
			out = append(out, fmt.Sprintf("side interface %s lacks its address %s", s.IfName, f.addr))
		}
		ok, err := hasRoute(s, f, idx)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, fmt.Sprintf("routing table %d lacks the default route via %s dev %s", s.Table, f.gw, s.IfName))
		}
		rules, err := netlink.RuleList(f.nl)
		if err != nil {
			return nil, fmt.Errorf("list rules: %w", err)
		}
		found := false
		for _, r := range rules {
			if s.isOurRule(r) && r.Family == f.nl {
				found = true
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("no rule %d: from %s lookup %d", s.Priority, f.addr.Addr(), s.Table))
		}
	}
	installed, err := filterInstalled(idx)
	if err != nil {
		return nil, err
	}
	if !installed {
		out = append(out, fmt.Sprintf("side interface %s lacks its egress filter", s.IfName))
	}
	return out, nil
}

func hasAddr(addrs []netlink.Addr, p netip.Prefix) bool {
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && ip.Unmap() == p.Addr() && ones == p.Bits() {
			return true
		}
	}
	return false
}

// hasRoute reports whether the side's table holds the default route of
// family f via the link with index idx.
func hasRoute(s Side, f family, idx int) (bool, error) {
	routes, err := netlink.RouteListFiltered(f.nl, &netlink.Route{Table: s.Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return false, fmt.Errorf("list routes of table %d: %w", s.Table, err)
	}
	for _, r := range routes {
		gw, ok := netip.AddrFromSlice(r.Gw)
		if ok && gw.Unmap() == f.gw && r.LinkIndex == idx && isDefault(r) {
			return true, nil
		}
	}
	return false, nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// Teardown removes the side's rules and the routes of its table that go
// through the tap; the tap itself, with its addresses and filter, goes
// with pasta. A namespace that is gone (or replaced at its path) took all
// of it: that is success. Only rules that are exactly the side's (see
// isOurRule) and routes via the side's tap are removed.
func Teardown(s Side) error {
	if err := s.Validate(); err != nil {
		return err
	}
	err := s.do(func() error {
		var errs []error
		for _, f := range s.families() {
			rules, err := netlink.RuleList(f.nl)
			if err != nil {
				return fmt.Errorf("list rules: %w", err)
			}
			for _, r := range rules {
				if !s.isOurRule(r) {
					continue
				}
				if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("remove rule from %s lookup %d: %w", r.Src, s.Table, err))
				}
			}
		}
		link, err := tapLink(s.IfName)
		if err != nil {
			return errors.Join(errs...) // no tap: its routes went with it
		}
		for _, f := range s.families() {
			routes, err := netlink.RouteListFiltered(f.nl, &netlink.Route{Table: s.Table}, netlink.RT_FILTER_TABLE)
			if err != nil {
				return fmt.Errorf("list routes of table %d: %w", s.Table, err)
			}
			for _, r := range routes {
				if r.LinkIndex != link.Attrs().Index {
					continue
				}
				if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("remove route %s from table %d: %w", routeString(r), s.Table, err))
				}
			}
		}
		return errors.Join(errs...)
	})
	if errors.Is(err, ErrGone) {
		return nil
	}
	return err
}
