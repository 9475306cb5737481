package forwarder

import "net"

// Network is what pasta configured in a namespace (ReadNetwork), in no
// runtime's format: the interface, its addresses with the gateway of
// their family, the routes with a next hop, and the DNS pasta offers.
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
