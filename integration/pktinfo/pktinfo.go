// Package pktinfo answers UDP datagrams from the address each was sent to
// (IP_PKTINFO, IPV6_PKTINFO), as DNS servers do: the test servers' way to
// be reached on a second interface of their namespace (the plugin's side
// interface when it is chained after a pod network), where a reply from
// the address the kernel picks would leave by the other interface.
package pktinfo

import (
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Conn is a UDP socket of one address family that reads each datagram
// with the address it was sent to.
type Conn struct {
	c dstConn
}

// New turns on the destination address of each datagram for c, a socket
// of network "udp4" or "udp6".
func New(c net.PacketConn, network string) (*Conn, error) {
	var dc dstConn
	var err error
	switch network {
	case "udp4":
		p := ipv4.NewPacketConn(c)
		dc, err = conn4{p}, p.SetControlMessage(ipv4.FlagDst, true)
	case "udp6":
		p := ipv6.NewPacketConn(c)
		dc, err = conn6{p}, p.SetControlMessage(ipv6.FlagDst, true)
	default:
		return nil, fmt.Errorf("pktinfo: network %q: want udp4 or udp6", network)
	}
	if err != nil {
		return nil, fmt.Errorf("pktinfo: destination addresses of %s: %w", c.LocalAddr(), err)
	}
	return &Conn{c: dc}, nil
}

// Serve answers every datagram with what reply makes of it and its
// sender, sent from the address the datagram was sent to (the kernel's
// choice when the datagram came without one), until reading fails: it
// returns that error (net.ErrClosed once the socket is closed). A reply
// that cannot be sent is lost, as a datagram may be; the next datagram
// is answered.
func (c *Conn) Serve(reply func(b []byte, from net.Addr) []byte) error {
	buf := make([]byte, 2048)
	for {
		n, dst, from, err := c.c.read(buf)
		if err != nil {
			return err
		}
		_ = c.c.write(reply(buf[:n], from), dst, from)
	}
}

// dstConn reads a datagram with its destination address and writes one
// from a given source address (nil: the kernel's choice; x/net then sends
// no control message).
type dstConn interface {
	read(b []byte) (n int, dst net.IP, from net.Addr, err error)
	write(b []byte, src net.IP, to net.Addr) error
}

type conn4 struct{ p *ipv4.PacketConn }

func (c conn4) read(b []byte) (int, net.IP, net.Addr, error) {
	n, cm, from, err := c.p.ReadFrom(b)
	if cm == nil {
		return n, nil, from, err
	}
	return n, cm.Dst, from, err
}

func (c conn4) write(b []byte, src net.IP, to net.Addr) error {
	_, err := c.p.WriteTo(b, &ipv4.ControlMessage{Src: src}, to)
	return err
}

type conn6 struct{ p *ipv6.PacketConn }

func (c conn6) read(b []byte) (int, net.IP, net.Addr, error) {
	n, cm, from, err := c.p.ReadFrom(b)
	if cm == nil {
		return n, nil, from, err
	}
	return n, cm.Dst, from, err
}

func (c conn6) write(b []byte, src net.IP, to net.Addr) error {
	_, err := c.p.WriteTo(b, &ipv6.ControlMessage{Src: src}, to)
	return err
}
