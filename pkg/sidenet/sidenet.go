// Package sidenet sets up, checks and removes the side interface of a
// chained attachment inside a pod's network namespace.
//
// A chained pasta joins a pod whose network an earlier plugin made (a
// bridge's veth, a Calico or Cilium interface, ...) without touching that
// network: it makes its own tap device (the side interface) and is told
// not to configure it. This package gives the tap an address of each
// family the pod uses (IPv4 link-local; IPv6 from a unique local prefix,
// since Linux refuses a reply whose IPV6_PKTINFO source is link-local
// without an interface, which is how DNS servers answer; the IPv6
// address is deprecated so that the kernel never picks it as a source by
// itself), brings it up and makes replies from those addresses leave
// through it by source-based routing: a rule "from ADDR lookup TABLE"
// and, in TABLE, a default route via pasta's address on the link (its
// IPv4 side address, its link-local fe80::1). The pod's own addresses,
// routes and rules are left as they are: the addresses carry
// IFA_F_NOPREFIXROUTE and the tap makes no IPv6 link-local address of its
// own, so nothing is added to the main table (only the kernel's local
// table gets the entries of the new addresses).
//
// What a pod process could do with the side interface is closed here too:
// an egress filter on the tap (a classic BPF program run by cls_bpf in
// direct-action mode on a clsact qdisc) drops every frame that could make
// pasta open a connection on the pod's behalf: TCP segments that open a
// connection (SYN without ACK), ICMP and ICMPv6 other than neighbour
// discovery, and anything that is not ARP, TCP, UDP or ICMPv6. UDP is closed
// on pasta's side: the chained pasta's outbound address is one the node
// cannot send from (see package forwarder), so a datagram that is not a
// reply to a forwarded flow goes nowhere.
//
// Every function runs in the pod's namespace, opened by path; it refuses
// to run in the caller's own namespace, the node's.
package sidenet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// Defaults of a chained attachment's side.
const (
	// DefaultIfName is the name of the tap pasta makes in the pod.
	DefaultIfName = "pasta0"
	// DefaultTable is the routing table of the side's replies: a number
	// no pod network we know of uses inside a pod (Calico, Cilium,
	// flannel, bridge and ptp put none there).
	DefaultTable = 20563
	// Priority is the priority of the rules that select DefaultTable:
	// early, so that no rule of the pod network sends the side's replies
	// elsewhere first; the rules match the side's addresses only.
	Priority = 500
	// MTU is the tap's MTU: pasta's own default, so that no reply is
	// fragmented (pasta drops IP fragments).
	MTU = 65520
)

// DefaultNetwork4 and DefaultNetwork6 are the side's networks: in the
// IPv4 one pasta takes the first host address and the pod the second
// (169.254.100.1 and .2); in the IPv6 one, a unique local prefix picked
// at random for this plugin (RFC 4193), the pod takes the second
// (fd41:e00e:44f8::2) and pasta is Gateway6 on the link.
var (
	DefaultNetwork4 = netip.MustParsePrefix("169.254.100.0/30")
	DefaultNetwork6 = netip.MustParsePrefix("fd41:e00e:44f8::/64")
)

// Gateway6 is pasta's IPv6 address on the side link, the side's IPv6
// gateway: link-local, so that a pod's reply to a client on the node's
// loopback (which pasta presents as coming from it) stays on the link.
var Gateway6 = netip.MustParseAddr("fe80::1")

// Side is the side interface of one attachment.
type Side struct {
	// NetNS is the path of the pod's network namespace; Inode, when not
	// zero, the inode it had when the side was set up: a namespace now at
	// the path with another inode is not the one set up.
	NetNS string
	Inode uint64
	// IfName is the tap pasta made (pasta -I).
	IfName string
	// Table and Priority are those of the rules that send the side's
	// replies through the tap.
	Table    int
	Priority int
	// Addr4 is the pod's IPv4 address on the side with the network's
	// prefix length, Gateway4 pasta's; Addr6 and Gateway6 the same for
	// IPv6. An invalid Addr4 or Addr6 means no side address of that
	// family.
	Addr4    netip.Prefix
	Gateway4 netip.Addr
	Addr6    netip.Prefix
	Gateway6 netip.Addr
}

// Plan returns the side of an attachment on the side networks net4 and
// net6 (an invalid prefix: none of that family): the pod gets the second
// host address of each; pasta the first of net4, and Gateway6.
func Plan(netnsPath, ifName string, table int, net4, net6 netip.Prefix) (Side, error) {
	s := Side{NetNS: netnsPath, IfName: ifName, Table: table, Priority: Priority}
	if net4.IsValid() {
		gw, pod, err := hosts(net4)
		if err != nil {
			return Side{}, err
		}
		s.Gateway4, s.Addr4 = gw, netip.PrefixFrom(pod, net4.Bits())
	}
	if net6.IsValid() {
		_, pod, err := hosts(net6)
		if err != nil {
			return Side{}, err
		}
		s.Gateway6, s.Addr6 = Gateway6, netip.PrefixFrom(pod, net6.Bits())
	}
	return s, s.Validate()
}

// CheckNetwork reports a side network that cannot be one: it needs two
// host addresses (a prefix of at most 30 bits for IPv4, 126 for IPv6) in
// IPv4 link-local (169.254.0.0/16) or IPv6 unique local (fc00::/7)
// addresses, which no client on the Internet has.
func CheckNetwork(p netip.Prefix) error {
	_, _, err := hosts(p)
	return err
}

// hosts returns the first and second host addresses of p.
func hosts(p netip.Prefix) (first, second netip.Addr, err error) {
	p = p.Masked()
	a := p.Addr()
	switch {
	case !p.IsValid() || a.Zone() != "":
		return first, second, fmt.Errorf("side network %s: not a prefix without a zone", p)
	case a.Is4() && (p.Bits() < 16 || p.Bits() > 30 || !a.IsLinkLocalUnicast()):
		return first, second, fmt.Errorf("side network %s: want an IPv4 link-local prefix (inside 169.254.0.0/16) of 16 to 30 bits", p)
	case a.Is6() && (a.Is4In6() || p.Bits() < 7 || p.Bits() > 126 || !a.IsPrivate()):
		return first, second, fmt.Errorf("side network %s: want an IPv6 unique local prefix (inside fc00::/7) of 7 to 126 bits", p)
	}
	first = a.Next()
	return first, first.Next(), nil
}

// CheckTable reports a routing table number the side cannot have: it
// needs one of its own, not main, local or default.
func CheckTable(t int) error {
	if t <= 0 || t == unix.RT_TABLE_MAIN || t == unix.RT_TABLE_LOCAL || t == unix.RT_TABLE_DEFAULT || t >= 1<<31 {
		return fmt.Errorf("side routing table %d: want a table of its own (not main %d, local %d or default %d), 1 to 2^31-1",
			t, unix.RT_TABLE_MAIN, unix.RT_TABLE_LOCAL, unix.RT_TABLE_DEFAULT)
	}
	return nil
}

// Validate reports a side that this package cannot set up.
func (s *Side) Validate() error {
	if err := CheckTable(s.Table); err != nil {
		return err
	}
	switch {
	case s.IfName == "" || len(s.IfName) >= unix.IFNAMSIZ:
		return fmt.Errorf("side interface name %q: want 1 to %d bytes", s.IfName, unix.IFNAMSIZ-1)
	case s.Priority <= 0 || s.Priority >= 32766:
		return fmt.Errorf("side rule priority %d: want one before the main table's (32766)", s.Priority)
	case !s.Addr4.IsValid() && !s.Addr6.IsValid():
		return errors.New("side: no address")
	case s.Addr4.IsValid() && (!s.Addr4.Addr().Is4() || !s.Gateway4.Is4() || !s.Addr4.Masked().Contains(s.Gateway4) || s.Gateway4 == s.Addr4.Addr()):
		return fmt.Errorf("side IPv4 address %s, gateway %s: want IPv4, the gateway another address of the network", s.Addr4, s.Gateway4)
	case s.Addr6.IsValid() && (!s.Addr6.Addr().Is6() || s.Addr6.Addr().Is4In6() || !s.Gateway6.Is6() || !s.Gateway6.IsLinkLocalUnicast()):
		return fmt.Errorf("side IPv6 address %s, gateway %s: want IPv6, the gateway link-local", s.Addr6, s.Gateway6)
	}
	return nil
}

// Families returns the side's addresses and gateways, IPv4 first.
func (s *Side) families() []family {
	var fs []family
	if s.Addr4.IsValid() {
		fs = append(fs, family{addr: s.Addr4, gw: s.Gateway4, nl: unix.AF_INET})
	}
	if s.Addr6.IsValid() {
		fs = append(fs, family{addr: s.Addr6, gw: s.Gateway6, nl: unix.AF_INET6})
	}
	return fs
}

// family is the side of one IP version.
type family struct {
	addr netip.Prefix
	gw   netip.Addr
	nl   int // AF_INET or AF_INET6
}

func (f family) hostNet() *net.IPNet {
	bits := 32
	if f.nl == unix.AF_INET6 {
		bits = 128
	}
	return &net.IPNet{IP: f.addr.Addr().AsSlice(), Mask: net.CIDRMask(bits, bits)}
}

func (f family) ipNet() *net.IPNet {
	bits := 32
	if f.nl == unix.AF_INET6 {
		bits = 128
	}
	return &net.IPNet{IP: f.addr.Addr().AsSlice(), Mask: net.CIDRMask(f.addr.Bits(), bits)}
}

// ErrGone is returned by do when the namespace is no longer there, or
// another namespace is at its path.
var ErrGone = errors.New("the pod's network namespace is gone")

// Inode returns the inode of the network namespace at path.
func Inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return st.Ino, nil
}

// do runs fn in the pod's namespace. It fails with ErrGone (wrapped) when
// the path is missing or names another namespace than Inode, and refuses
// the caller's own namespace.
func (s *Side) do(fn func() error) error {
	// The namespace opened is the one checked (fstat of its descriptor):
	// another one mounted at the path meanwhile is not entered.
	target, err := ns.GetNS(s.NetNS)
	if err != nil {
		var nse ns.NSPathNotExistErr
		if errors.As(err, &nse) {
			return fmt.Errorf("%s: %w", s.NetNS, ErrGone)
		}
		return fmt.Errorf("open network namespace %s: %w", s.NetNS, err)
	}
	defer target.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(target.Fd()), &st); err != nil {
		return fmt.Errorf("network namespace %s: %w", s.NetNS, &os.PathError{Op: "fstat", Path: s.NetNS, Err: err})
	}
	if s.Inode != 0 && st.Ino != s.Inode {
		return fmt.Errorf("%s now names another namespace (inode %d, set up in %d): %w", s.NetNS, st.Ino, s.Inode, ErrGone)
	}
	if own, err := Inode("/proc/thread-self/ns/net"); err == nil && own == st.Ino {
		return fmt.Errorf("network namespace %s is the plugin's own (the node's): the side interface belongs in the pod's", s.NetNS)
	}
	return target.Do(func(ns.NetNS) error { return fn() })
}
