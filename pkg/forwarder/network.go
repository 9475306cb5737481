package forwarder

import (
	"net"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Network is what pasta configured in a namespace, in no runtime's
// format: the interface, its addresses with the gateway of their family,
// the routes with a next hop, and the DNS pasta offers.
type Network struct {
	Interface Interface
	Addresses []Address
	Routes    []Route
	DNS       DNS
}

// Interface is the interface pasta made.
type Interface struct {
	Name    string
	MAC     string
	MTU     int
	Sandbox string // the namespace path
}

// Address is an address of the interface and the gateway of its family
// (nil if none).
type Address struct {
	Prefix  net.IPNet
	Gateway net.IP
}

// Route is a route with a gateway.
type Route struct {
	Dst      net.IPNet
	Gateway  net.IP
	Priority int
}

// DNS is the resolver configuration pasta announced.
type DNS struct {
	Nameservers []string
	Domain      string
	Search      []string
	Options     []string
}

// ReadNetwork is ReadResult in no runtime's format.
func ReadNetwork(cfg Config) (*Network, error) {
	r, err := ReadResult(cfg)
	if err != nil {
		return nil, err
	}
	return networkOf(r), nil
}

// networkOf is the inverse of Network.CNIResult.
func networkOf(r *current.Result) *Network {
	n := &Network{DNS: DNS{Nameservers: r.DNS.Nameservers, Domain: r.DNS.Domain, Search: r.DNS.Search, Options: r.DNS.Options}}
	if len(r.Interfaces) > 0 {
		i := r.Interfaces[0]
		n.Interface = Interface{Name: i.Name, MAC: i.Mac, MTU: i.Mtu, Sandbox: i.Sandbox}
	}
	for _, ip := range r.IPs {
		n.Addresses = append(n.Addresses, Address{Prefix: ip.Address, Gateway: ip.Gateway})
	}
	for _, rt := range r.Routes {
		n.Routes = append(n.Routes, Route{Dst: rt.Dst, Gateway: rt.GW, Priority: rt.Priority})
	}
	return n
}

// CNIResult is n as ReadResult returns it (CNIVersion
// current.ImplementedSpecVersion).
func (n *Network) CNIResult() *current.Result {
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: n.Interface.Name, Mac: n.Interface.MAC, Mtu: n.Interface.MTU, Sandbox: n.Interface.Sandbox}},
		DNS:        types.DNS{Nameservers: n.DNS.Nameservers, Domain: n.DNS.Domain, Search: n.DNS.Search, Options: n.DNS.Options},
	}
	for _, r := range n.Routes {
		res.Routes = append(res.Routes, &types.Route{Dst: r.Dst, GW: r.Gateway, Priority: r.Priority})
	}
	for _, a := range n.Addresses {
		res.IPs = append(res.IPs, &current.IPConfig{Interface: current.Int(0), Address: a.Prefix, Gateway: a.Gateway})
	}
	return res
}
